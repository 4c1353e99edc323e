"""An index of the pods the traffic model cares about, kept current by a store listener.

Scanning 20,000 pods on every tick would cost more than the tick itself, so the index is
updated from the store's change events and the model reads it in O(workloads).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from istio_sandbox.istio.names import ANNOTATION_REV, PROXY_CONTAINER, image_tag
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import Obj, Store, WatchEvent

PODS = BY_KEY["/pods"]


@dataclass(frozen=True)
class PodInfo:
    """What the mesh needs to know about one pod."""

    namespace: str
    app: str
    """``app`` label: the workload whose traffic the pod serves."""
    revision: str
    """Revision that injected the sidecar (annotation ``istio.io/rev``); ``""`` = no sidecar."""
    proxy_version: str
    """Image tag of the ``istio-proxy`` container; ``""`` when unknown."""
    ready: bool
    node: str = ""
    ambient: bool = False
    """Enrolled by istio-cni (``ambient.istio.io/redirection: enabled``): ztunnel carries it."""
    ztunnel_xds: str = ""
    """For a ztunnel pod: its ``XDS_ADDRESS`` (the istiod Service it connects to)."""


def pod_info(pod: Obj) -> PodInfo:
    """Reduce a Pod to :class:`PodInfo`."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    proxy_version = ""
    xds = ""
    labels = meta.get("labels") or {}
    is_ztunnel = (
        labels.get("app") == "ztunnel" and labels.get("app.kubernetes.io/name") == "ztunnel"
    )
    # Native sidecars (Kubernetes 1.29+) put istio-proxy among the init containers.
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") == PROXY_CONTAINER:
            proxy_version = image_tag(str(container.get("image", "")))
            if is_ztunnel:
                env = {e.get("name"): e.get("value") for e in container.get("env") or []}
                xds = str(env.get("XDS_ADDRESS") or "")
    ready = not meta.get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    return PodInfo(
        namespace=str(meta.get("namespace", "")),
        # Gateway API gateways and waypoints carry no ``app`` label; istiod labels their pods
        # with the Deployment's name as canonical name.
        app=str(
            (meta.get("labels") or {}).get("app")
            or (meta.get("labels") or {}).get("service.istio.io/canonical-name", "")
        ),
        # A ztunnel's istio.io/rev annotation names its chart revision, not a sidecar.
        revision="" if is_ztunnel else str(annotations.get(ANNOTATION_REV, "")),
        proxy_version=proxy_version,
        ready=bool(ready),
        node=str(spec.get("nodeName") or ""),
        ambient=annotations.get("ambient.istio.io/redirection") == "enabled",
        ztunnel_xds=xds if is_ztunnel else "",
    )


class PodIndex:
    """Ready pods by workload, and proxies by (revision, version)."""

    def __init__(self, store: Store) -> None:
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self._by_app: dict[tuple[str, str], dict[str, PodInfo]] = {}
        self.proxies: Counter[tuple[str, str]] = Counter()
        """Ready injected pods by (revision, proxy version): what each istiod serves."""
        self.ztunnels: Counter[tuple[str, str]] = Counter()
        """Ready ztunnel pods by (XDS address, ztunnel version)."""
        self.ztunnel_nodes: Counter[str] = Counter()
        """Ready ztunnel pods per node: ambient pods there have their traffic carried."""
        for pod in store.list(PODS, copy_objects=False):
            self._put(pod)
        store.add_listener(self._on_change)

    def _on_change(self, ev: WatchEvent) -> None:
        if ev.rt.key != PODS.key:
            return
        if ev.type == "DELETED":
            m = ev.obj["metadata"]
            self._drop((m.get("namespace", ""), m["name"]))
        else:
            self._put(ev.obj)

    def _put(self, pod: Obj) -> None:
        m = pod["metadata"]
        key = (str(m.get("namespace", "")), str(m["name"]))
        self._drop(key)
        info = pod_info(pod)
        self._pods[key] = info
        self._by_app.setdefault((info.namespace, info.app), {})[key[1]] = info
        if info.ready and info.revision:
            self.proxies[(info.revision, info.proxy_version)] += 1
        if info.ready and info.ztunnel_xds:
            self.ztunnels[(info.ztunnel_xds, info.proxy_version)] += 1
            self.ztunnel_nodes[info.node] += 1

    def _drop(self, key: tuple[str, str]) -> None:
        info = self._pods.pop(key, None)
        if info is None:
            return
        group = self._by_app.get((info.namespace, info.app))
        if group is not None:
            group.pop(key[1], None)
            if not group:
                del self._by_app[(info.namespace, info.app)]
        if info.ready and info.revision:
            self.proxies[(info.revision, info.proxy_version)] -= 1
            if self.proxies[(info.revision, info.proxy_version)] <= 0:
                del self.proxies[(info.revision, info.proxy_version)]
        if info.ready and info.ztunnel_xds:
            self.ztunnels[(info.ztunnel_xds, info.proxy_version)] -= 1
            if self.ztunnels[(info.ztunnel_xds, info.proxy_version)] <= 0:
                del self.ztunnels[(info.ztunnel_xds, info.proxy_version)]
            self.ztunnel_nodes[info.node] -= 1
            if self.ztunnel_nodes[info.node] <= 0:
                del self.ztunnel_nodes[info.node]

    def ready_pods(self, namespace: str, app: str) -> list[PodInfo]:
        """Ready pods labelled ``app`` in ``namespace``."""
        return [p for p in self._by_app.get((namespace, app), {}).values() if p.ready]

    def __len__(self) -> int:
        return len(self._pods)
