"""Moving namespaces between revisions: labels, restarts, rollout waits, pod verification.

Every mutation is "make it so": labels are set to exact values, and a restart stamps the pod
template with the upgrade id and step, so a retried activity never restarts a workload twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Any

from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import audit
from istio_upgrade.activities.discovery import (
    ANNOTATION_RESTART_STAMP,
    injected_revision,
    pod_info,
    pod_owner,
    replicaset_owners,
)
from istio_upgrade.activities.kube_client import Kube, NotFound, Obj
from istio_upgrade.istio.naming import (
    ANNOTATION_RESTARTED_AT,
    LABEL_INJECTION,
    LABEL_POD_INJECT,
    LABEL_REV,
)
from istio_upgrade.models.activities import RestartResult, RolloutReport, VerifyReport
from istio_upgrade.models.plan import NamespaceLabels, WorkloadRevision
from istio_upgrade.models.progress import Straggler

RESTARTABLE = ("Deployment", "StatefulSet", "DaemonSet")


def _namespace_missing(namespace: str, cluster: str) -> ApplicationError:
    return ApplicationError(
        f"namespace {namespace!r} does not exist in cluster {cluster}; "
        "it was deleted after discovery — start the upgrade again to re-plan",
        type="NamespaceNotFound",
        non_retryable=True,
    )


def relabel(kube: Kube, labels: list[NamespaceLabels], skip_missing: bool = False) -> list[str]:
    """Set ``istio-injection`` and ``istio.io/rev`` of each namespace to exact values.

    Returns:
        ``namespace: labels`` lines describing what was set.
    """
    done: list[str] = []
    for entry in labels:
        patch = {
            "metadata": {
                "labels": {LABEL_INJECTION: entry.istio_injection, LABEL_REV: entry.istio_rev}
            }
        }
        try:
            kube.merge_patch("v1", "Namespace", entry.namespace, patch)
        except NotFound:
            if skip_missing:
                done.append(f"{entry.namespace}: deleted since discovery, nothing to restore")
                continue
            raise _namespace_missing(entry.namespace, kube.cluster) from None
        done.append(
            f"{entry.namespace}: {LABEL_INJECTION}={entry.istio_injection or '-'} "
            f"{LABEL_REV}={entry.istio_rev or '-'}"
        )
    return done


GATEWAY_API = "gateway.networking.k8s.io/v1"
LABEL_GATEWAY_MANAGED = "gateway.istio.io/managed"
"""Label istiod puts on what it deploys for a Gateway (its pods opt out of injection)."""


def _rendered_revision(obj: Obj | None) -> str | None:
    meta = _template(obj or {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get(LABEL_REV) or (meta.get("labels") or {}).get(
        LABEL_REV
    )


def label_gateways(
    kube: Kube,
    gateways: list[WorkloadRevision],
    expect: str | None,
    timeout_seconds: float = 60.0,
    tick: Callable[[], None] | None = None,
) -> list[str]:
    """Set each Gateway's own ``istio.io/rev`` label; then wait for istiod to re-render.

    The istiod owning a Gateway renders its Deployment (upstream
    ``pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go``); a label change moves it
    to another istiod, which rewrites the pod template (a rollout). Waiting here for the
    template to name ``expect`` keeps the rollout wait that follows from racing istiod.
    """
    done: list[str] = []
    for gw in gateways:
        current = kube.get_or_none(GATEWAY_API, "Gateway", gw.name, gw.namespace)
        if current is None:
            continue
        if (current["metadata"].get("labels") or {}).get(LABEL_REV) != gw.revision:
            patch = {"metadata": {"labels": {LABEL_REV: gw.revision}}}
            try:
                kube.merge_patch(GATEWAY_API, "Gateway", gw.name, patch, gw.namespace)
            except NotFound:
                continue
        done.append(f"{gw.ref}: {LABEL_REV}={gw.revision or '-'}")
    deadline = time.time() + timeout_seconds
    for gw in gateways:
        if expect is None or gw.deployment is None:
            continue
        while True:
            rendered = _rendered_revision(
                kube.get_or_none("apps/v1", "Deployment", gw.deployment, gw.namespace)
            )
            if rendered == expect:
                break
            if time.time() >= deadline:
                raise ApplicationError(
                    f"{gw.namespace}/Deployment/{gw.deployment} of Gateway {gw.name} is still "
                    f"rendered by {rendered or 'no istiod'} {timeout_seconds:g}s after its "
                    f"label changed; expected {expect}: check istiod-{expect}'s logs",
                    type="GatewayNotReconciled",
                )
            if tick is not None:
                tick()
            time.sleep(0.5)
    return done


def label_workloads(kube: Kube, workloads: list[WorkloadRevision], stamp: str) -> list[str]:
    """Set each workload's pod template ``istio.io/rev`` label, restarting it in the same patch.

    One template change rolls the pods once: the label (which the revision webhooks'
    ``rev.object.`` webhook routes in a namespace without injection labels) and the restart
    stamp go together, so the batch's restart step finds it already stamped. A workload whose
    template already has the stamp is left alone (a retried activity patches nothing twice).

    Returns:
        ``namespace/Kind/name: istio.io/rev=<value>`` for every workload patched.
    """
    done: list[str] = []
    for w in workloads:
        obj = kube.get_or_none("apps/v1", w.kind, w.name, w.namespace)
        if obj is None:
            continue  # deleted since discovery: nothing left to move
        meta = _template(obj).get("metadata") or {}
        if (meta.get("annotations") or {}).get(ANNOTATION_RESTART_STAMP) == stamp:
            continue
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "labels": {LABEL_REV: w.revision},
                        "annotations": {
                            ANNOTATION_RESTARTED_AT: now,
                            ANNOTATION_RESTART_STAMP: stamp,
                        },
                    }
                }
            }
        }
        try:
            kube.merge_patch("apps/v1", w.kind, w.name, patch, w.namespace)
        except NotFound:
            continue
        done.append(f"{w.ref}: {LABEL_REV}={w.revision or '-'}")
    return done


def read_labels(kube: Kube, namespaces: list[str]) -> list[NamespaceLabels]:
    """The injection labels of ``namespaces`` as they are now (deleted ones are left out)."""
    wanted = set(namespaces)
    found: list[NamespaceLabels] = []
    for ns in kube.list("v1", "Namespace"):
        name = ns["metadata"]["name"]
        if name in wanted:
            labels = ns["metadata"].get("labels") or {}
            found.append(
                NamespaceLabels(
                    namespace=name,
                    istio_injection=labels.get(LABEL_INJECTION),
                    istio_rev=labels.get(LABEL_REV),
                )
            )
    return sorted(found, key=lambda n: n.namespace)


def _template(obj: Obj) -> dict[str, Any]:
    template: dict[str, Any] = (obj.get("spec") or {}).get("template") or {}
    return template


def _opted_out(obj: Obj) -> bool:
    meta = _template(obj).get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return "false" in (labels.get(LABEL_POD_INJECT), annotations.get(LABEL_POD_INJECT))


def restart(
    kube: Kube,
    namespaces: list[str],
    stamp: str,
    max_concurrent: int,
    on_progress: Callable[[str], None] | None = None,
    skip_missing: bool = False,
) -> RestartResult:
    """Rolling-restart every Deployment, StatefulSet and DaemonSet whose pods get a sidecar.

    Args:
        kube: Client of the cluster.
        namespaces: Namespaces of the batch.
        stamp: Upgrade id and step; workloads already stamped with it are skipped.
        max_concurrent: Restarts in flight at once.
        on_progress: Called per namespace listed and after each restart (heartbeat); a
            cancellation raised by it stops the restarts not yet begun.
        skip_missing: Skip (and report) namespaces deleted since discovery instead of failing.
    """
    result = RestartResult()
    todo: list[tuple[str, str, str]] = []
    for namespace in namespaces:
        if on_progress:
            on_progress(namespace)
        found_namespace = kube.get_or_none("v1", "Namespace", namespace)
        if found_namespace is None:
            if skip_missing:
                result.missing_namespaces.append(namespace)
                continue
            raise _namespace_missing(namespace, kube.cluster)
        for kind in RESTARTABLE:
            for obj in kube.list("apps/v1", kind, namespace):
                name = obj["metadata"]["name"]
                ref = f"{namespace}/{kind}/{name}"
                if _opted_out(obj):
                    continue
                annotations = (_template(obj).get("metadata") or {}).get("annotations") or {}
                if annotations.get(ANNOTATION_RESTART_STAMP) == stamp:
                    result.already_restarted.append(ref)
                else:
                    todo.append((namespace, kind, name))

    def one(item: tuple[str, str, str]) -> str:
        namespace, kind, name = item
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            ANNOTATION_RESTARTED_AT: now,
                            ANNOTATION_RESTART_STAMP: stamp,
                        }
                    }
                }
            }
        }
        try:
            kube.merge_patch("apps/v1", kind, name, patch, namespace)
        except NotFound:
            return ""  # deleted since the list: nothing left to restart
        return f"{namespace}/{kind}/{name}"

    # Heartbeats must come from the activity's own thread, so results are reaped here. When
    # the activity is cancelled or its worker stops, restarts not yet begun are dropped
    # (``cancel_futures``) and those in flight finish: each is one patch, and the stamp lets
    # the next attempt skip them.
    pool = ThreadPoolExecutor(max_workers=max(1, max_concurrent))
    try:
        futures = [pool.submit(audit.run_in_context(one), item) for item in todo]
        for future in as_completed(futures):
            ref = future.result()
            if ref:
                result.restarted.append(ref)
                if on_progress:
                    on_progress(ref)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    result.restarted.sort()
    return result


def rollout_pending(kind: str, obj: Obj) -> str | None:
    """Why a rollout is incomplete, as ``kubectl rollout status`` reads it; None when done."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "waiting for the spec update to be observed"
    if kind == "Deployment":
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                return "exceeded its progress deadline"
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        if updated < want:
            return f"{updated} of {want} updated replicas"
        if status.get("replicas", 0) > updated:
            return f"{status.get('replicas', 0) - updated} old replicas pending termination"
        if status.get("availableReplicas", 0) < updated:
            return f"{status.get('availableReplicas', 0)} of {updated} updated replicas available"
        return None
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if status.get("readyReplicas", 0) < want:
            return f"{status.get('readyReplicas', 0)} of {want} pods ready"
        if status.get("updatedReplicas", 0) < want:
            if _on_delete(obj):
                # kubectl rollout status returns at once here; the pods stay old until
                # deleted, which wait_rollouts does one at a time.
                return f"OnDelete: {status.get('updatedReplicas', 0)} of {want} pods replaced"
            return f"{status.get('updatedReplicas', 0)} of {want} pods updated"
        if not _on_delete(obj) and status.get("updateRevision") != status.get("currentRevision"):
            return "waiting for the update revision to become current"
        return None
    desired = status.get("desiredNumberScheduled", 0)
    if status.get("updatedNumberScheduled", 0) < desired:
        prefix = "OnDelete: " if _on_delete(obj) else ""
        return (
            f"{prefix}{status.get('updatedNumberScheduled', 0)} of {desired} updated pods scheduled"
        )
    if status.get("numberAvailable", 0) < desired:
        return f"{status.get('numberAvailable', 0)} of {desired} updated pods available"
    return None


def _on_delete(obj: Obj) -> bool:
    strategy = (obj.get("spec") or {}).get("updateStrategy") or {}
    return strategy.get("type") == "OnDelete"


def _is_current(kind: str, obj: Obj, pod: Obj) -> bool:
    """Whether an OnDelete workload's pod already runs its latest template."""
    labels = pod["metadata"].get("labels") or {}
    if kind == "StatefulSet":
        return labels.get("controller-revision-hash") == (obj.get("status") or {}).get(
            "updateRevision"
        )
    # DaemonSet pods carry the generation of the template they were made from.
    return labels.get("pod-template-generation") == str(obj["metadata"].get("generation", 1))


def replace_one_old_pod(kube: Kube, kind: str, obj: Obj) -> str | None:
    """Delete one pod of an OnDelete workload that still runs an old template.

    Only when every pod of the workload is Ready and none is terminating: one pod at a time,
    the budget of a rolling update with maxUnavailable 1. Returns the pod deleted.
    """
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector:
        return None
    pods = list(
        kube.list(
            "v1",
            "Pod",
            meta["namespace"],
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        )
    )
    mine = [
        p
        for p in pods
        if any(r.get("uid") == meta.get("uid") for r in p["metadata"].get("ownerReferences") or [])
        or not meta.get("uid")
    ]
    if any(p["metadata"].get("deletionTimestamp") or not pod_info(p).ready for p in mine):
        return None
    old = sorted(p["metadata"]["name"] for p in mine if not _is_current(kind, obj, p))
    if not old:
        return None
    # StatefulSets replace from the highest ordinal down, as their rolling update does.
    victim = old[-1] if kind == "StatefulSet" else old[0]
    kube.delete("v1", "Pod", victim, meta["namespace"])
    return f"{meta['namespace']}/{victim}"


def _stamped(obj: Obj, prefix: str | None) -> bool:
    if prefix is None:
        return True
    meta = _template(obj).get("metadata") or {}
    return str((meta.get("annotations") or {}).get(ANNOTATION_RESTART_STAMP, "")).startswith(prefix)


def pending_rollouts(kube: Kube, namespace: str, stamp_prefix: str | None = None) -> list[str]:
    """``namespace/Kind/name: why`` of every workload of the namespace still rolling out.

    OnDelete StatefulSets and DaemonSets replace a pod only when it is deleted: one old pod
    is deleted per poll while the others are Ready, so they end on the new template too.
    """
    pending: list[str] = []
    for kind in RESTARTABLE:
        for obj in kube.list("apps/v1", kind, namespace):
            why = rollout_pending(kind, obj)
            if why:
                pending.append(f"{namespace}/{kind}/{obj['metadata']['name']}: {why}")
                # Only workloads this upgrade restarted: an OnDelete workload someone holds
                # on an older template on purpose is left alone.
                if kind != "Deployment" and _on_delete(obj) and _stamped(obj, stamp_prefix):
                    replace_one_old_pod(kube, kind, obj)
    return pending


def wait_rollouts(
    kube: Kube,
    namespaces: list[str],
    timeout_seconds: float,
    poll_seconds: float,
    done: set[str],
    started: float,
    heartbeat: Callable[[list[str], float], None],
    stamp_prefix: str | None = None,
) -> RolloutReport:
    """Poll until every workload of the namespaces has rolled out, or the deadline passes.

    Args:
        kube: Client of the cluster.
        namespaces: Namespaces to wait for.
        timeout_seconds: Deadline, counted from ``started``.
        poll_seconds: Time between polls at first (see :func:`poll_interval`).
        done: Namespaces known complete (resumed from heartbeat details).
        started: Wall-clock start of the wait (resumed from heartbeat details).
        heartbeat: Called each poll with the namespaces done and ``started``.
    """
    pending: dict[str, list[str]] = {}
    while True:
        for namespace in namespaces:
            if namespace in done:
                continue
            still = pending_rollouts(kube, namespace, stamp_prefix)
            if still:
                pending[namespace] = still
            else:
                pending.pop(namespace, None)
                done.add(namespace)
            # One poll of a large batch against a slow API server can outlast the heartbeat
            # timeout; beating per namespace also saves the progress a retry resumes from.
            heartbeat(sorted(done), started)
        waited = time.time() - started
        if not pending:
            return RolloutReport(complete=True, waited_seconds=waited)
        if waited >= timeout_seconds:
            return RolloutReport(
                complete=False,
                pending=[line for lines in pending.values() for line in lines],
                waited_seconds=waited,
            )
        time.sleep(poll_interval(poll_seconds, waited))


MAX_POLL_SECONDS = 10.0


def poll_interval(poll_seconds: float, waited: float) -> float:
    """Seconds to the next poll: ``poll_seconds`` at first, a tenth of the wait so far later.

    Quick rollouts are seen within a second; a rollout that takes many minutes is polled every
    few seconds (at most every ``MAX_POLL_SECONDS``), not three lists per namespace per second.
    """
    return max(poll_seconds, min(waited / 10, MAX_POLL_SECONDS))


def verify(
    kube: Kube,
    namespaces: list[str],
    expected: str,
    unmanaged_pods: str = "warn",
    only_workloads: dict[str, list[str]] | None = None,
) -> VerifyReport:
    """Check that every live, injectable pod of the namespaces was injected by ``expected``.

    Completed, failed and terminating pods are ignored; pods that opted out and hostNetwork
    pods (never injected: ``pkg/kube/inject`` skips them) are not checked; bare pods and Job
    pods on another revision are reported apart (nothing can restart them), and so are pods
    of controllers this tool does not restart (Argo Rollouts, operators) unless
    ``unmanaged_pods`` is ``fail``. In the namespaces of ``only_workloads`` (migrated per
    workload), only the pods of the named ``Kind/name`` workloads are checked.
    """
    report = VerifyReport(ok=True)
    only = only_workloads or {}
    for namespace in namespaces:
        rs_owners: dict[tuple[str, str], tuple[str, str]] | None = None
        for pod in kube.list("v1", "Pod", namespace):
            info = pod_info(pod)
            # istiod renders a Gateway's proxy into its pods (which opt out of injection).
            gateway = LABEL_GATEWAY_MANAGED in (pod["metadata"].get("labels") or {})
            if not info.active or (info.opted_out and not gateway):
                continue
            if namespace in only:
                if rs_owners is None:
                    rs_owners = replicaset_owners(kube.list("apps/v1", "ReplicaSet", namespace))
                kind, name = pod_owner(pod, rs_owners)
                if f"{kind}/{name}" not in only[namespace]:
                    continue
            if (pod.get("spec") or {}).get("hostNetwork"):
                report.host_network_skipped.append(f"{namespace}/{info.name}")
                continue
            report.pods_checked += 1
            revision = injected_revision(pod)
            if revision == expected:
                continue
            owners = [r.get("kind") for r in pod["metadata"].get("ownerReferences") or []]
            if not owners or "Job" in owners:
                report.not_restartable.append(
                    f"{namespace}/{info.name} (revision {revision or 'none'})"
                )
                continue
            if "ReplicaSet" in owners and rs_owners is None:
                rs_owners = replicaset_owners(kube.list("apps/v1", "ReplicaSet", namespace))
            kind, name = pod_owner(pod, rs_owners or {})
            if kind not in RESTARTABLE and unmanaged_pods != "fail":
                report.unmanaged.append(
                    f"{namespace}/{info.name} (owned by {kind}/{name}, revision "
                    f"{revision or 'none'}): restart it through its own controller"
                )
                continue
            reason = (
                "no sidecar" if revision is None else f"injected by {revision}, expected {expected}"
            )
            if kind not in RESTARTABLE:
                reason += f"; owned by {kind}/{name}, which this tool does not restart"
            if not info.ready:
                reason += f"; pod is {info.phase} and not Ready"
            report.stragglers.append(
                Straggler(namespace=namespace, pod=info.name, revision=revision, reason=reason)
            )
    report.ok = not report.stragglers
    return report
