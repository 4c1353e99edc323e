"""ReplicaSet controller: keep ``spec.replicas`` pods alive, report counts and create failures."""

from __future__ import annotations

from istio_sandbox.controllers.events import REPLICASET_CONTROLLER
from istio_sandbox.controllers.injector import route
from istio_sandbox.controllers.objects import (
    PODS,
    REPLICASETS,
    annotations_of,
    controller_of,
    is_active,
    is_ready,
    pod_from_template,
    pod_phase,
    random_suffix,
    remove_condition,
    set_condition,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.rollout_faults import matching_fault
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import Obj

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RETRY_S = 1.0
"""How soon a ReplicaSet whose pod creation was refused tries again."""


class ReplicaSetController:
    def __init__(self, rt: Runtime, pods: PodLifecycle) -> None:
        self.rt = rt
        self.pods = pods
        self.failing: set[tuple[str, str]] = set()
        """ReplicaSets whose last pod creation was refused; retried when istiod changes."""

    def reconcile(self, ns: str, name: str) -> None:
        rs = self.rt.get(REPLICASETS, ns, name)
        if rs is None:
            self.failing.discard((ns, name))
            return
        want = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        pods = [p for p in self.rt.owned(rs, PODS) if is_active(p)]
        failure: str | None = None
        attempted = False
        if len(pods) < want and not self._stuck(rs):
            attempted = True
            template = (rs.get("spec") or {}).get("template") or {}
            hash_ = (rs["metadata"].get("labels") or {}).get("pod-template-hash", "")
            extra = {"pod-template-hash": hash_} if hash_ else {}
            for _ in range(want - len(pods)):
                pod = pod_from_template(
                    rs, REPLICASETS, template, f"{name}-{random_suffix()}", extra
                )
                err = self.pods.create(rs, pod, REPLICASET_CONTROLLER)
                if err is not None:
                    failure = err.message
                    break
        elif len(pods) > want:
            victims = sorted(pods, key=_victim_key)[: len(pods) - want]
            for pod in victims:
                self.pods.terminate(pod)
                self.rt.events.record(
                    rs,
                    "SuccessfulDelete",
                    f"Deleted pod: {pod['metadata']['name']}",
                    component=REPLICASET_CONTROLLER,
                )
        if failure is not None:
            self.failing.add((ns, name))
            self.rt.after(RETRY_S, lambda: self.rt.mark(REPLICASETS.key, ns, name))
        elif attempted or len(pods) >= want:
            self.failing.discard((ns, name))
        self._sync_status(rs, failure)

    def _stuck(self, rs: Obj) -> bool:
        """A ``stuck`` fault blocks pods of a rollout's new template (not a first rollout)."""
        if not self.rt.cluster.faults.rollouts:
            return False
        if annotations_of(rs).get(REVISION_ANNOTATION, "1") == "1":
            return False
        ns = rs["metadata"]["namespace"]
        owner = controller_of(rs)
        workload = str(owner.get("name")) if owner else rs["metadata"]["name"]
        template = (rs.get("spec") or {}).get("template") or {}
        r = route(
            self.rt.cluster,
            ns,
            dict((template.get("metadata") or {}).get("labels") or {}),
            lambda n: self.rt.in_namespace(PODS, n),
        )
        return matching_fault(self.rt, ns, workload, r.revision if r else None, "stuck") is not None

    def _sync_status(self, rs: Obj, failure: str | None) -> None:
        m = rs["metadata"]
        pods = [p for p in self.rt.owned(rs, PODS) if is_active(p)]
        ready = sum(1 for p in pods if is_ready(p))
        selector_labels = ((rs.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        fully = sum(
            1
            for p in pods
            if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in selector_labels.items()
            )
        )
        old = rs.get("status") or {}
        status: Obj = {
            "replicas": len(pods),
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": m.get("generation", 1),
        }
        if old.get("conditions"):
            status["conditions"] = [dict(c) for c in old["conditions"]]
        if failure is not None:
            set_condition(
                status, "ReplicaFailure", "True", "FailedCreate", failure, with_update_time=False
            )
        elif (m["namespace"], m["name"]) not in self.failing:
            remove_condition(status, "ReplicaFailure")
        if not status.get("conditions"):
            status.pop("conditions", None)
        if status != old:
            self.rt.store.set_status(REPLICASETS, m["namespace"], m["name"], status)


def _victim_key(pod: Obj) -> tuple[int, int, int, str]:
    """Which pods a scale-down removes first: unscheduled, pending, not ready, then newest."""
    phase = pod_phase(pod)
    ts = str(pod["metadata"].get("creationTimestamp", ""))
    # Newest first: invert the timestamp's sort order character by character.
    inverted = "".join(chr(0x10FFFF - ord(ch)) for ch in ts)
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        0 if phase == "Pending" else 1,
        1 if is_ready(pod) else 0,
        inverted,
    )
