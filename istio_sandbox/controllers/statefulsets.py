"""StatefulSet controller: ordinal pods, OrderedReady/Parallel, reverse-ordinal rolling update."""

from __future__ import annotations

from istio_sandbox.controllers.events import STATEFULSET_CONTROLLER
from istio_sandbox.controllers.injector import route
from istio_sandbox.controllers.objects import (
    PODS,
    STATEFULSETS,
    drop_zeros,
    is_ready,
    is_terminating,
    labels_of,
    pod_from_template,
    template_hash,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.rollout_faults import matching_fault
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import Obj

REVISION_LABEL = "controller-revision-hash"
RETRY_S = 1.0


class StatefulSetController:
    def __init__(self, rt: Runtime, pods: PodLifecycle) -> None:
        self.rt = rt
        self.pods = pods

    def reconcile(self, ns: str, name: str) -> None:
        sts = self.rt.get(STATEFULSETS, ns, name)
        if sts is None:
            return
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        template = spec.get("template") or {}
        update_rev = f"{name}-{template_hash(template)}"
        old_status = sts.get("status") or {}
        current_rev = old_status.get("currentRevision") or update_rev
        parallel = spec.get("podManagementPolicy") == "Parallel"
        by_ordinal: dict[int, Obj] = {}
        extra: list[Obj] = []
        for pod in self.rt.owned(sts, PODS):
            ordinal = _ordinal(name, pod["metadata"]["name"])
            if ordinal is None:
                continue
            if ordinal < replicas:
                by_ordinal[ordinal] = pod
            else:
                extra.append(pod)
        failed = False
        blocked = False
        for i in range(replicas):
            existing = by_ordinal.get(i)
            if existing is None:
                if self._stuck(sts, template, update_rev != current_rev):
                    break
                new_pod = pod_from_template(
                    sts,
                    STATEFULSETS,
                    template,
                    f"{name}-{i}",
                    {
                        REVISION_LABEL: update_rev,
                        "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                        "apps.kubernetes.io/pod-index": str(i),
                    },
                )
                new_pod["spec"].setdefault("hostname", f"{name}-{i}")
                if spec.get("serviceName"):
                    new_pod["spec"].setdefault("subdomain", spec["serviceName"])
                if self.pods.create(sts, new_pod, STATEFULSET_CONTROLLER) is not None:
                    failed = True
                    break
                blocked = True
                if not parallel:
                    break
            elif not parallel and (is_terminating(existing) or not is_ready(existing)):
                blocked = True
                break
        if failed:
            self.rt.after(RETRY_S, lambda: self.rt.mark(STATEFULSETS.key, ns, name))
        # Scale down from the highest ordinal, one at a time unless Parallel.
        for pod in sorted(extra, key=lambda p: -(_ordinal(name, p["metadata"]["name"]) or 0)):
            if is_terminating(pod):
                if not parallel:
                    break
                continue
            self.pods.terminate(pod)
            if not parallel:
                break
        strategy = spec.get("updateStrategy") or {}
        if not blocked and not failed and strategy.get("type", "RollingUpdate") == "RollingUpdate":
            partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0) or 0)
            pods = [by_ordinal.get(i) for i in range(replicas)]
            if all(p is not None and is_ready(p) and not is_terminating(p) for p in pods):
                for i in reversed(range(partition, replicas)):
                    pod = by_ordinal[i]
                    if labels_of(pod).get(REVISION_LABEL) != update_rev:
                        self.pods.terminate(pod)
                        break
        self._sync_status(sts, replicas, update_rev, current_rev)

    def _stuck(self, sts: Obj, template: Obj, rolling: bool) -> bool:
        if not rolling or not self.rt.cluster.faults.rollouts:
            return False
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        r = route(
            self.rt.cluster,
            ns,
            dict((template.get("metadata") or {}).get("labels") or {}),
            lambda n: self.rt.in_namespace(PODS, n),
        )
        return matching_fault(self.rt, ns, name, r.revision if r else None, "stuck") is not None

    def _sync_status(self, sts: Obj, replicas: int, update_rev: str, current_rev: str) -> None:
        m = sts["metadata"]
        pods = [
            p
            for p in self.rt.owned(sts, PODS)
            if not is_terminating(p) and _ordinal(m["name"], p["metadata"]["name"]) is not None
        ]
        ready = sum(1 for p in pods if is_ready(p))
        updated = sum(1 for p in pods if labels_of(p).get(REVISION_LABEL) == update_rev)
        current = sum(1 for p in pods if labels_of(p).get(REVISION_LABEL) == current_rev)
        if updated == replicas and ready == replicas and len(pods) == replicas:
            current_rev, current = update_rev, updated
        old = sts.get("status") or {}
        status = drop_zeros(
            {
                "observedGeneration": m.get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "currentReplicas": current,
                "updatedReplicas": updated,
                "availableReplicas": ready,
                "currentRevision": current_rev,
                "updateRevision": update_rev,
                "collisionCount": 0,
            },
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
        )
        if status != old:
            self.rt.store.set_status(STATEFULSETS, m["namespace"], m["name"], status)


def _ordinal(sts_name: str, pod_name: str) -> int | None:
    prefix = f"{sts_name}-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix) :]
    return int(tail) if tail.isdigit() else None
