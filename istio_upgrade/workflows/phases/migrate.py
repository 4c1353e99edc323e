"""Move one batch of namespaces to the target revision, and its undo.

Per batch: push its rollback, label the namespaces ``istio.io/rev=<target>``, restart their
workloads (stamped with the upgrade id and batch, so a retry restarts nothing twice), wait
for the rollouts and verify every pod's sidecar — then soak it behind the gate (``soak.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import (
        collect_diagnostics,
        label_workloads,
        relabel_namespaces,
        restart_workloads,
        verify_namespaces,
        wait_rollouts,
    )
    from istio_upgrade.models.activities import (
        DiagnosticsInput,
        RelabelInput,
        RestartInput,
        RolloutInput,
        VerifyInput,
        WorkloadLabelInput,
    )
    from istio_upgrade.models.plan import Batch, NamespaceLabels, Plan
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows import identity
    from istio_upgrade.workflows.phases.soak import soak
    from istio_upgrade.workflows.state import UpgradeFailure, UpgradeState
    from istio_upgrade.workflows.steps import INTERRUPTIBLE_WAITS, run_step


async def migrate_batch(st: UpgradeState, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
    """Relabel, restart and settle ``batch`` on the target revision, then soak it.

    Raises:
        UpgradeFailure: ``RolloutFailed``, ``GateFailed``, ``GateInconclusive`` or ``Aborted``.
    """
    target = plan.target_revision
    bp = st.progress.batches[batch.index]
    st.progress.current_batch = batch.index
    await st.checkpoint()
    st.set_phase(Phase.MIGRATING)
    pre_end = workflow.now()
    bp.started_at = pre_end
    st.set_batch(bp, "relabeling")
    push_batch_rollback(st, spec, plan, batch)
    # A batch of opted-in workloads only (the gateways) has no namespace to relabel; every
    # batch of upgrades recorded before per-workload moves relabelled and restarted.
    labelled = batch.labelled_namespaces
    if labelled or not batch.workloads:
        await run_step(
            relabel_namespaces,
            RelabelInput(
                cluster=spec.cluster,
                labels=[NamespaceLabels(namespace=ns, istio_rev=target) for ns in labelled],
                batch=batch.index,
            ),
            summary=f"batch {batch.index}: label {len(labelled)} namespaces istio.io/rev={target}",
            heartbeats=True,
        )
    stamp = identity.stamp(f"batch-{batch.index}")
    if batch.workloads:
        moved = await run_step(
            label_workloads,
            WorkloadLabelInput(
                cluster=spec.cluster,
                workloads=[w.model_copy(update={"revision": target}) for w in batch.workloads],
                stamp=stamp,
                expect_revision=target,
            ),
            summary=f"batch {batch.index}: label {len(batch.workloads)} opted-in workloads "
            f"and gateways istio.io/rev={target}",
            heartbeats=True,
        )
        bp.restarted += moved
    st.set_batch(bp, "restarting")
    if labelled or not batch.workloads:
        restarted = await run_step(
            restart_workloads,
            RestartInput(
                cluster=spec.cluster,
                namespaces=labelled,
                stamp=stamp,
                max_concurrent=spec.migration.max_concurrent_restarts,
            ),
            summary=f"batch {batch.index}: restart workloads",
            heartbeats=True,
        )
        bp.restarted += restarted.restarted + restarted.already_restarted
    st.set_batch(bp, "rolling_out")
    interrupt = st.interrupted if workflow.patched(INTERRUPTIBLE_WAITS) else None
    await settle(st, spec, batch.namespaces, target, f"batch {batch.index}", batch, interrupt)
    bp.ready_at = workflow.now()
    await soak(st, spec, plan, batch, bp, pre_end)
    bp.finished_at = workflow.now()
    st.set_batch(bp, "passed")


async def settle(
    st: UpgradeState,
    spec: UpgradeSpec,
    namespaces: list[str],
    revision: str,
    label: str,
    batch: Batch | None = None,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> None:
    """Wait for the rollouts, then verify every pod's revision; diagnose stragglers.

    ``interrupt`` (forward batches only: a rollback's own waits run to their end) stops the
    rollout wait when the upgrade is aborted.

    Raises:
        UpgradeFailure: ``RolloutFailed``, naming at most five pending rollouts and stragglers.
    """
    timeout = spec.migration.rollout_timeout_seconds
    rollout = await run_step(
        wait_rollouts,
        RolloutInput(
            cluster=spec.cluster,
            namespaces=namespaces,
            timeout_seconds=timeout,
            # This run's stamps only (``identity.stamp``): not another upgrade whose id this
            # one's starts with, nor an earlier run of the same id.
            stamp_prefix=identity.upgrade_identity() + "/",
        ),
        summary=f"{label}: wait for rollouts",
        wait_seconds=timeout,
        interrupt=interrupt,
    )
    verified = await run_step(
        verify_namespaces,
        VerifyInput(
            cluster=spec.cluster,
            namespaces=namespaces,
            expected_revision=revision,
            unmanaged_pods=spec.migration.unmanaged_pods,
            only_workloads=_only_workloads(batch),
        ),
        summary=f"{label}: verify pods run {revision} sidecars",
    )
    st.progress.warnings += [
        f"not restartable, keeps its old proxy: {ref}" for ref in verified.not_restartable
    ]
    st.progress.warnings += [f"not managed by this tool: {ref}" for ref in verified.unmanaged]
    if verified.host_network_skipped:
        shown = ", ".join(verified.host_network_skipped[:5])
        more = len(verified.host_network_skipped) - 5
        st.progress.warnings.append(
            f"{label}: hostNetwork pods are never injected, not checked: {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    if rollout.complete and verified.ok:
        return
    st.progress.stragglers = verified.stragglers
    diag = await run_step(
        collect_diagnostics,
        DiagnosticsInput(cluster=spec.cluster, stragglers=verified.stragglers[:5]),
        summary=f"{label}: collect diagnostics",
    )
    st.progress.diagnostics = diag.diagnostics
    problems = rollout.pending[:5] + [
        f"{s.namespace}/{s.pod}: {s.reason}" for s in verified.stragglers[:5]
    ]
    raise UpgradeFailure(
        f"{label} did not settle on {revision} within {timeout:g}s: {'; '.join(problems)}",
        "RolloutFailed",
    )


def _only_workloads(batch: Batch | None) -> dict[str, list[str]]:
    """In namespaces migrated per workload, only those workloads' pods carry a sidecar."""
    only: dict[str, list[str]] = {}
    if batch is None:
        return only
    # A relabelled namespace's pods are all checked, its gateways' included.
    per_workload = set(batch.per_workload_namespaces)
    for w in batch.workloads:
        if w.namespace in per_workload:
            only.setdefault(w.namespace, []).append(w.runs_as)
    return only


def push_batch_rollback(st: UpgradeState, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
    """Make returning ``batch`` to the old revision part of the rollback."""
    st.compensations.push(
        f"roll back batch {batch.index}", lambda: restore_batch(st, spec, plan, batch)
    )


async def restore_batch(st: UpgradeState, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
    """Give the batch its original labels back and restart it onto the old revision.

    A batch that does not settle back marks the rollback incomplete instead of failing it.
    """
    bp = st.progress.batches[batch.index]
    st.set_batch(bp, "rolling_back")
    labelled = batch.labelled_namespaces
    stamp = identity.stamp(f"rollback-{batch.index}")
    if labelled or not batch.workloads:
        await run_step(
            relabel_namespaces,
            RelabelInput(
                cluster=spec.cluster,
                labels=batch.original_labels,
                skip_missing=True,
                batch=batch.index,
            ),
            summary=f"rollback batch {batch.index}: restore original labels",
            heartbeats=True,
        )
    if batch.workloads:
        await run_step(
            label_workloads,
            WorkloadLabelInput(
                cluster=spec.cluster,
                workloads=batch.workloads,
                stamp=stamp,
                expect_revision=plan.source_revision,
            ),
            summary=f"rollback batch {batch.index}: restore opted-in workloads' and "
            "gateways' labels",
            heartbeats=True,
        )
    if labelled or not batch.workloads:
        restarted = await run_step(
            restart_workloads,
            RestartInput(
                cluster=spec.cluster,
                namespaces=labelled,
                stamp=stamp,
                max_concurrent=spec.migration.max_concurrent_restarts,
                skip_missing=True,
            ),
            summary=f"rollback batch {batch.index}: restart workloads",
            heartbeats=True,
        )
        if restarted.missing_namespaces:
            st.progress.warnings.append(
                f"rollback of batch {batch.index}: skipped namespaces deleted since discovery: "
                + ", ".join(restarted.missing_namespaces)
            )
    try:
        await settle(
            st,
            spec,
            batch.namespaces,
            plan.source_revision,
            f"rollback of batch {batch.index}",
            batch,
        )
    except UpgradeFailure as error:
        st.progress.errors.append(error.message)
        st.compensations.mark_incomplete()
        return
    st.set_batch(bp, "rolled_back")
