"""Continue as new between batches, and pick up in the next run where the last one stopped.

A long upgrade hands itself to a fresh run (same workflow id) at a batch boundary — when
Temporal suggests it or after ``migration.max_batches_per_run`` batches — so that no run's
history grows with the cluster. The next run receives a ``Carryover`` and rebuilds the
compensation stack from it.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.carryover import Carryover
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.continuation import newer_version_current, next_run_behavior
    from istio_upgrade.workflows.phases.install import push_uninstall_target
    from istio_upgrade.workflows.phases.migrate import push_batch_rollback
    from istio_upgrade.workflows.state import UpgradeState


def run_is_long(spec: UpgradeSpec, batches_this_run: int) -> bool:
    """Whether to continue as new before the next batch (history size or the spec says so, or
    a newer worker version became current: the rest of the upgrade then runs on it)."""
    limit = spec.migration.max_batches_per_run
    long = bool(limit and batches_this_run >= limit)
    long = long or workflow.info().is_continue_as_new_suggested()
    # Upgrades recorded before runs could continue as new must replay without doing so:
    # their histories can carry the server's suggestion too.
    return (long or newer_version_current()) and workflow.patched("continue-as-new-between-batches")


async def continue_as_new(
    st: UpgradeState,
    spec: UpgradeSpec,
    plan: Plan,
    report: PrecheckReport,
    original_tags: dict[str, str],
    next_batch: int,
) -> None:
    """Hand the upgrade to a fresh run (same workflow id) at a batch boundary."""
    # Updates and signals handled in this run must not be lost with it; the checkpoint
    # comes last (without yielding when not paused) so an abort is acted on here, never
    # dropped between runs.
    await workflow.wait_condition(workflow.all_handlers_finished)
    # No notification is left in flight by this run (each ends within a minute).
    await st.notifications.settle()
    await st.checkpoint()
    progress = st.progress.model_copy(deep=True)
    for bp in progress.batches[:next_batch]:
        # Finished batches keep their decisive evaluation: the payload stays small however
        # many batches and evaluations came before.
        bp.gate_results = bp.gate_results[-1:]
    for bp in progress.batches:
        bp.namespaces = []  # the plan carries them; the next run takes them from there
    carried = Carryover(
        progress=progress,
        plan=plan,
        report=report,
        original_tags=original_tags,
        next_batch=next_batch,
        uninstall_target_on_rollback=st.uninstall_target,
        approved=sorted(st.approved),
        locked=st.locked,
        lock_holder=st.lock_holder,
    )
    workflow.continue_as_new(args=[spec, carried], initial_versioning_behavior=next_run_behavior())


def resume(st: UpgradeState, spec: UpgradeSpec, plan: Plan, carried: Carryover) -> int:
    """Rebuild the compensation stack the previous run held, in the same order.

    Returns:
        The index of the first batch this run migrates.
    """
    st.uninstall_target = carried.uninstall_target_on_rollback
    if st.uninstall_target:
        push_uninstall_target(st, spec, plan.target_revision)
    for done in plan.batches[: carried.next_batch]:
        push_batch_rollback(st, spec, plan, done)
    return carried.next_batch
