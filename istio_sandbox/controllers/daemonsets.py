"""DaemonSet controller: one pod per simulated node, rolling update within maxUnavailable."""

from __future__ import annotations

from istio_sandbox.controllers.events import DAEMONSET_CONTROLLER
from istio_sandbox.controllers.injector import route
from istio_sandbox.controllers.objects import (
    DAEMONSETS,
    PODS,
    drop_zeros,
    int_or_percent,
    is_active,
    is_ready,
    labels_of,
    pod_from_template,
    random_suffix,
    template_hash,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.rollout_faults import matching_fault
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import Obj
from istio_sandbox.system import NODES

REVISION_LABEL = "controller-revision-hash"
RETRY_S = 1.0


class DaemonSetController:
    def __init__(self, rt: Runtime, pods: PodLifecycle) -> None:
        self.rt = rt
        self.pods = pods

    def reconcile(self, ns: str, name: str) -> None:
        ds = self.rt.get(DAEMONSETS, ns, name)
        if ds is None:
            return
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        rev = template_hash(template)
        by_node: dict[str, list[Obj]] = {node: [] for node in NODES}
        terminating_nodes: set[str] = set()
        for pod in self.rt.owned(ds, PODS):
            node = (pod.get("spec") or {}).get("nodeName", "")
            if node not in by_node:
                continue
            if is_active(pod):
                by_node[node].append(pod)
            else:
                terminating_nodes.add(node)
        failed = False
        rolling = any(
            labels_of(p).get(REVISION_LABEL) != rev for pods in by_node.values() for p in pods
        )
        strategy = spec.get("updateStrategy") or {}
        rolling_update = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        surge = (
            int_or_percent(ru.get("maxSurge", 0), len(NODES), round_up=True)
            if rolling_update
            else 0
        )
        surge_nodes: set[str] = set()
        if surge > 0:
            # pkg/controller/daemon/update.go rollingUpdate with maxSurge: a node whose pods are
            # all old gets a new pod next to them while fewer than maxSurge nodes are surging;
            # the old pods go once the new one is Ready.
            surging = sum(
                1
                for pods in by_node.values()
                if any(labels_of(p).get(REVISION_LABEL) == rev and not is_ready(p) for p in pods)
                and any(labels_of(p).get(REVISION_LABEL) != rev for p in pods)
            )
            for node, pods in by_node.items():
                if not pods or any(labels_of(p).get(REVISION_LABEL) == rev for p in pods):
                    continue
                if surging >= surge:
                    break
                surge_nodes.add(node)
                surging += 1
        for node, pods in by_node.items():
            if (pods and node not in surge_nodes) or node in terminating_nodes:
                continue
            if self._stuck(ds, template, rolling):
                break
            pod = pod_from_template(
                ds,
                DAEMONSETS,
                template,
                f"{name}-{random_suffix()}",
                {
                    REVISION_LABEL: rev,
                    "pod-template-generation": str(ds["metadata"].get("generation", 1)),
                },
            )
            pod["spec"]["nodeName"] = node
            if self.pods.create(ds, pod, DAEMONSET_CONTROLLER) is not None:
                failed = True
                break
        if failed:
            self.rt.after(RETRY_S, lambda: self.rt.mark(DAEMONSETS.key, ns, name))
        if rolling_update and surge > 0:
            for pods in by_node.values():
                if any(labels_of(p).get(REVISION_LABEL) == rev and is_ready(p) for p in pods):
                    for pod in pods:
                        if labels_of(pod).get(REVISION_LABEL) != rev:
                            self.pods.terminate(pod)
        elif rolling_update:
            budget = max(int_or_percent(ru.get("maxUnavailable", 1), len(NODES), round_up=False), 1)
            unavailable = sum(
                1 for node, pods in by_node.items() if not any(is_ready(p) for p in pods)
            )
            for pods in by_node.values():
                for pod in pods:
                    if labels_of(pod).get(REVISION_LABEL) == rev:
                        continue
                    # An old pod that is not ready costs no extra availability to replace.
                    if is_ready(pod) and unavailable >= budget:
                        continue
                    if is_ready(pod):
                        unavailable += 1
                    self.pods.terminate(pod)
        self._sync_status(ds, rev)

    def _stuck(self, ds: Obj, template: Obj, rolling: bool) -> bool:
        if not rolling or not self.rt.cluster.faults.rollouts:
            return False
        ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
        r = route(
            self.rt.cluster,
            ns,
            dict((template.get("metadata") or {}).get("labels") or {}),
            lambda n: self.rt.in_namespace(PODS, n),
        )
        return matching_fault(self.rt, ns, name, r.revision if r else None, "stuck") is not None

    def _sync_status(self, ds: Obj, rev: str) -> None:
        m = ds["metadata"]
        pods = [p for p in self.rt.owned(ds, PODS) if is_active(p)]
        nodes = {(p.get("spec") or {}).get("nodeName") for p in pods}
        ready_nodes = {(p.get("spec") or {}).get("nodeName") for p in pods if is_ready(p)}
        updated_nodes = {
            (p.get("spec") or {}).get("nodeName")
            for p in pods
            if labels_of(p).get(REVISION_LABEL) == rev
        }
        desired = len(NODES)
        old = ds.get("status") or {}
        status = drop_zeros(
            {
                "observedGeneration": m.get("generation", 1),
                "currentNumberScheduled": len(nodes),
                "desiredNumberScheduled": desired,
                "numberMisscheduled": 0,
                "numberReady": len(ready_nodes),
                "numberAvailable": len(ready_nodes),
                "numberUnavailable": desired - len(ready_nodes),
                "updatedNumberScheduled": len(updated_nodes),
            },
            "numberAvailable",
            "numberUnavailable",
            "updatedNumberScheduled",
        )
        if status != old:
            self.rt.store.set_status(DAEMONSETS, m["namespace"], m["name"], status)
