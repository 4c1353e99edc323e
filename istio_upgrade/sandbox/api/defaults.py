"""What the API server sets on a new object before storing it."""

from __future__ import annotations

from istio_upgrade.sandbox.resources import ResourceType
from istio_upgrade.sandbox.store import Obj

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


def prepare_labels(rt: ResourceType, obj: Obj) -> None:
    """Namespaces always carry their own name as a label (Kubernetes 1.21+)."""
    if rt.plural == "namespaces":
        meta = obj.setdefault("metadata", {})
        labels = meta.get("labels") or {}
        labels[NAMESPACE_NAME_LABEL] = meta.get("name", "")
        meta["labels"] = labels
