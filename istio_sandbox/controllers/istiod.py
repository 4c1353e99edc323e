"""istiod as the sandbox sees it: a Deployment whose pods take longer to become Ready."""

from __future__ import annotations

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.objects import DEPLOYMENTS
from istio_sandbox.istio.names import ISTIO_NAMESPACE, image_tag, istiod_name
from istio_sandbox.store import Obj

DISCOVERY_CONTAINER = "discovery"


def is_istiod_pod(pod: Obj) -> bool:
    """Pods of ``istiod`` / ``istiod-<rev>`` Deployments in istio-system."""
    m = pod.get("metadata") or {}
    if m.get("namespace") != ISTIO_NAMESPACE:
        return False
    name = str(m.get("name", ""))
    return name.startswith("istiod-") or name == "istiod"


def _istiod(cluster: Cluster, revision: str) -> Obj | None:
    return cluster.store.try_get(DEPLOYMENTS, ISTIO_NAMESPACE, istiod_name(revision))


def revision_ready(cluster: Cluster, revision: str) -> bool:
    """Whether ``istiod-<revision>`` has a Ready pod, i.e. its injection webhook has endpoints."""
    return deployment_ready(_istiod(cluster, revision))


def revision_version(cluster: Cluster, revision: str) -> str | None:
    """The Istio version a revision runs: the image tag of istiod's ``discovery`` container."""
    return deployment_version(_istiod(cluster, revision))


def deployment_ready(dep: Obj | None) -> bool:
    """Whether an istiod Deployment object has at least one Ready pod."""
    if dep is None:
        return False
    return int((dep.get("status") or {}).get("readyReplicas") or 0) > 0


def deployment_version(dep: Obj | None) -> str | None:
    """The image tag of an istiod Deployment object's ``discovery`` container."""
    if dep is None:
        return None
    containers = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    for container in containers or []:
        if container.get("name") == DISCOVERY_CONTAINER:
            return image_tag(str(container.get("image", ""))) or None
    return None
