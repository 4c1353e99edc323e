"""The istio-cni node agent's pod enrollment (``cni/pkg/nodeagent``): a running pod that the
ambient enablement selectors match, on a node whose ``istio-cni-node`` pod is Ready, gets
``ambient.istio.io/redirection: enabled`` (``pending`` while that node's ztunnel is not
Ready); a pod that stops matching (namespace label removed) has the annotation removed.
Enrollment needs no restart, as in ambient: labelling a namespace enrolls its running pods.
"""

from __future__ import annotations

import contextlib

from istio_sandbox.controllers.injector import namespace_labels
from istio_sandbox.controllers.objects import (
    NAMESPACES,
    PODS,
    annotations_of,
    is_ready,
    is_terminating,
    labels_of,
    pod_phase,
)
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.istio.ambient import (
    ANNOTATION_REDIRECTION,
    CNI_DAEMONSET,
    REDIRECTION_ENABLED,
    REDIRECTION_PENDING,
    ZTUNNEL,
    should_enroll,
)
from istio_sandbox.store import NotFound, Obj, WatchEvent


def _node_agent(pod: Obj) -> str | None:
    """``istio-cni`` or ``ztunnel`` for those DaemonSets' pods, else None."""
    labels = labels_of(pod)
    if labels.get("k8s-app") == CNI_DAEMONSET:
        return "cni"
    if labels.get("app") == ZTUNNEL and labels.get("app.kubernetes.io/name") == ZTUNNEL:
        return "ztunnel"
    return None


class AmbientEnrollment:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._due: set[tuple[str, str]] = set()
        self._scheduled = False
        self._agents: dict[str, tuple[str, str, bool]] = {}
        """Node-agent pod uid → (kind, node, Ready and not terminating)."""

    def prime(self) -> None:
        """Learn the node agents that existed before the controllers started."""
        for pod in self.rt.all(PODS):
            agent = _node_agent(pod)
            if agent:
                node = str((pod.get("spec") or {}).get("nodeName") or "")
                ready = is_ready(pod) and not is_terminating(pod)
                self._agents[str(pod["metadata"].get("uid", ""))] = (agent, node, ready)
        if self._agents:
            self._queue_all(None)

    def _ready_agents(self, kind: str) -> set[str]:
        """Nodes with a Ready pod of the node agent ``kind``."""
        return {node for k, node, ready in self._agents.values() if k == kind and ready}

    def on_change(self, ev: WatchEvent) -> None:
        key = ev.rt.key
        m = ev.obj.get("metadata") or {}
        if key == PODS.key:
            agent = _node_agent(ev.obj)
            if agent:
                uid = str(m.get("uid", ""))
                before = self._agents.get(uid)
                if ev.type == "DELETED":
                    self._agents.pop(uid, None)
                else:
                    node = str((ev.obj.get("spec") or {}).get("nodeName") or "")
                    ready = is_ready(ev.obj) and not is_terminating(ev.obj)
                    self._agents[uid] = (agent, node, ready)
                if self._agents.get(uid) != before:
                    self._queue_all(None)
                return
            if ev.type == "DELETED":
                return
            if not self._agents and ANNOTATION_REDIRECTION not in (m.get("annotations") or {}):
                return  # no ambient data plane in this cluster: nothing to enroll
            self._queue(str(m.get("namespace", "")), str(m["name"]))
        elif key == NAMESPACES.key and (self._agents or ev.type != "ADDED"):
            self._queue_all(str(m["name"]))

    def _queue(self, ns: str, name: str) -> None:
        self._due.add((ns, name))
        if not self._scheduled:
            self._scheduled = True
            # Never write from inside a store notification.
            self.rt.after(0, self._run)

    def _queue_all(self, namespace: str | None) -> None:
        pods = self.rt.in_namespace(PODS, namespace) if namespace else list(self.rt.all(PODS))
        for pod in pods:
            if not _node_agent(pod):
                m = pod["metadata"]
                self._queue(str(m.get("namespace", "")), str(m["name"]))

    def _run(self) -> None:
        self._scheduled = False
        due, self._due = self._due, set()
        if not due:
            return
        cni = self._ready_agents("cni")
        ztunnel = self._ready_agents("ztunnel")
        labels_by_ns: dict[str, dict[str, str]] = {}
        for ns, name in sorted(due):
            pod = self.rt.get(PODS, ns, name)
            if pod is None or is_terminating(pod):
                continue
            node = str((pod.get("spec") or {}).get("nodeName") or "")
            if ns not in labels_by_ns:
                labels_by_ns[ns] = namespace_labels(self.rt.cluster, ns)
            current = annotations_of(pod).get(ANNOTATION_REDIRECTION)
            want: str | None = None
            running = current is not None or (pod_phase(pod) == "Running" and node in cni)
            if running and should_enroll(pod, labels_by_ns[ns]):
                want = REDIRECTION_ENABLED if node in ztunnel else REDIRECTION_PENDING
            if want == current:
                continue
            self._annotate(ns, name, want)

    def _annotate(self, ns: str, name: str, value: str | None) -> None:
        def fn(p: Obj) -> None:
            annotations = p["metadata"].setdefault("annotations", {})
            if value is None:
                annotations.pop(ANNOTATION_REDIRECTION, None)
            else:
                annotations[ANNOTATION_REDIRECTION] = value

        with contextlib.suppress(NotFound):
            self.rt.store.mutate(PODS, ns, name, fn)
