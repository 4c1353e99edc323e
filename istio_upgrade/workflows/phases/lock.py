"""The cluster lock: taken before an upgrade's first write, released when it is done.

One upgrade per cluster, whoever starts it (ConfigMap ``istio-system/istio-upgrade-lock``).
A rollback that leaves the cluster half-migrated keeps the lock, so that the next upgrade
does not start on a cluster that needs a person.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import acquire_cluster_lock, release_cluster_lock
    from istio_upgrade.models.activities import (
        LOCK_CONFIGMAP,
        LOCK_DELETE_COMMAND,
        LockInput,
        lock_busy_message,
    )
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.compensation import run_patiently
    from istio_upgrade.workflows.identity import upgrade_identity
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import run_step


async def acquire(st: UpgradeState, spec: UpgradeSpec, plan: Plan, report: PrecheckReport) -> None:
    """Take the cluster's lock before the first write, or refuse: one upgrade per cluster.

    Raises:
        ApplicationError: ``ClusterBusy``, naming the upgrade that holds the lock.
    """
    # This run's identity, not the bare workflow id: a failed upgrade started again under the
    # same id must not re-take a lock its predecessor kept (``identity.py``).
    holder = upgrade_identity()
    lock = await run_step(
        acquire_cluster_lock,
        LockInput(cluster=spec.cluster, holder=holder),
        summary="lock the cluster for this upgrade",
    )
    if not lock.acquired:
        message = lock_busy_message(spec.cluster.name, lock.holder)
        st.finish(Phase.FAILED)
        result = st.result("FAILED", f"refused: {message}", plan, report)
        raise ApplicationError(message, result, type="ClusterBusy", non_retryable=True)
    st.locked = True
    st.lock_holder = holder


def _holder(st: UpgradeState) -> str:
    # A run continued by older code carries no holder: it locked with the workflow id.
    return st.lock_holder or workflow.info().workflow_id


async def release(st: UpgradeState, spec: UpgradeSpec, *, patient: bool = False) -> None:
    """Release the cluster lock; a failure leaves a warning, never a failed upgrade.

    ``patient`` (after a steered rollback): retried like the rollback's undo steps, since a
    lock left behind by an API outage would refuse the next upgrade for nothing.
    """
    if not st.locked:
        return

    async def release_lock() -> None:
        await run_step(
            release_cluster_lock,
            LockInput(cluster=spec.cluster, holder=_holder(st)),
            summary="release the cluster lock",
        )

    retrying = st.rollback_retrying if patient else None
    error = await run_patiently("release the cluster lock", release_lock, retrying)
    if error is None:
        st.locked = False
        return
    st.progress.warnings.append(
        f"the cluster lock was not released ({error}); "
        + lock_busy_message(spec.cluster.name, _holder(st))
    )
    _notify_kept(st, spec, f"releasing it failed ({error})")


async def release_if_clean(st: UpgradeState, spec: UpgradeSpec) -> None:
    """After a rollback: release the lock, unless the cluster is left half-migrated."""
    if not st.compensations.incomplete:
        await release(st, spec, patient=st.steered)
    elif st.locked:
        # Keeping it stops the next upgrade from starting on a cluster that needs a person.
        st.progress.warnings.append(
            f"the cluster lock (ConfigMap istio-system/{LOCK_CONFIGMAP}) is kept because the "
            "rollback is incomplete: every new upgrade of the cluster is refused until a person "
            "has repaired it and released the lock with "
            f"`istio-upgrade unlock --cluster {spec.cluster.name}` (or {LOCK_DELETE_COMMAND})"
        )
        _notify_kept(st, spec, "the rollback is incomplete")


def _notify_kept(st: UpgradeState, spec: UpgradeSpec, why: str) -> None:
    st.notifications.fire(
        "lock_kept",
        f"The cluster lock (ConfigMap istio-system/{LOCK_CONFIGMAP}) of {spec.cluster.name} is "
        f"kept: {why}. Every new upgrade of the cluster is refused until it is released.",
        reasons=[why],
        next_steps="Make sure the cluster is healthy, then release the lock with "
        f"`istio-upgrade unlock --cluster {spec.cluster.name}` (or {LOCK_DELETE_COMMAND}).",
    )
