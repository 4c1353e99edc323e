"""Which rollout fault (``cluster.faults.rollouts``) applies to a pod or a workload."""

from __future__ import annotations

from istio_sandbox.controllers.objects import REPLICASETS, annotations_of, controller_of
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.faults import RolloutFault
from istio_sandbox.istio.names import ANNOTATION_REV
from istio_sandbox.store import Obj


def workload_of(rt: Runtime, pod: Obj) -> str | None:
    """Name of the Deployment/StatefulSet/DaemonSet/Job behind a pod; None for bare pods."""
    ref = controller_of(pod)
    if ref is None:
        return None
    if ref.get("kind") == "ReplicaSet":
        rs = rt.get(REPLICASETS, pod["metadata"].get("namespace", ""), str(ref.get("name")))
        owner = controller_of(rs) if rs is not None else None
        return str(owner.get("name")) if owner else str(ref.get("name"))
    return str(ref.get("name"))


def matching_fault(
    rt: Runtime, namespace: str, workload: str | None, revision: str | None, *kinds: str
) -> RolloutFault | None:
    """The first rollout fault of one of ``kinds`` matching this namespace/workload/revision."""
    for fault in rt.cluster.faults.rollouts:
        if fault.kind not in kinds or fault.namespace != namespace:
            continue
        if fault.workload is not None and fault.workload != workload:
            continue
        if fault.revision is not None and fault.revision != revision:
            continue
        return fault
    return None


def pod_fault(rt: Runtime, pod: Obj) -> RolloutFault | None:
    """A ``crash`` or ``never_ready`` fault for this pod (crash wins)."""
    ns = pod["metadata"].get("namespace", "")
    workload = workload_of(rt, pod)
    revision = annotations_of(pod).get(ANNOTATION_REV)
    return matching_fault(rt, ns, workload, revision, "crash") or matching_fault(
        rt, ns, workload, revision, "never_ready"
    )
