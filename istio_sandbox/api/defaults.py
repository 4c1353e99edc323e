"""What the API server sets on a new object before storing it."""

from __future__ import annotations

import hashlib

from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Obj

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_REPLICATED = frozenset({"deployments", "statefulsets", "replicasets"})


def prepare_for_create(rt: ResourceType, obj: Obj) -> None:
    """Reset client-sent status and fill the defaults the sandbox's controllers rely on."""
    if "status" in rt.subresources:
        # The API server ignores status on create for types with a status subresource.
        obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
        meta.pop(server_owned, None)
    if rt.plural == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    if rt.plural == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    if rt.plural == "services":
        _default_service(obj)
    if rt.plural in _REPLICATED:
        obj.setdefault("spec", {}).setdefault("replicas", 1)
    if rt.plural == "deployments":
        strategy = obj["spec"].setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        obj["spec"].setdefault("revisionHistoryLimit", 10)
        obj["spec"].setdefault("progressDeadlineSeconds", 600)
    prepare_labels(rt, obj)


def _default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        # Stable per name so re-creating a Service gives it the same address.
        digest = hashlib.sha256(
            f"{obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}".encode()
        ).digest()
        spec["clusterIP"] = f"10.96.{digest[0]}.{max(digest[1], 1)}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj["status"] = {"loadBalancer": {}}


def prepare_labels(rt: ResourceType, obj: Obj) -> None:
    """Namespaces always carry their own name as a label (Kubernetes 1.21+)."""
    if rt.plural == "namespaces":
        meta = obj.setdefault("metadata", {})
        labels = meta.get("labels") or {}
        labels[NAMESPACE_NAME_LABEL] = meta.get("name", "")
        meta["labels"] = labels
