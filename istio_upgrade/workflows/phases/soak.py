"""Soak a migrated batch and evaluate the safety gate until it decides.

Warm-up, then one gate evaluation (``measure_gate`` at the workflow's ``now``, decided by the
pure ``evaluate_gate``) per interval: FAIL rolls back at once; PASS after the soak time
proceeds; INCONCLUSIVE past the longest soak applies ``gate.on_inconclusive`` (proceed, roll
back, or wait for an operator's approval or soak extension).

Newer upgrades (patch ``gate-baseline-by-query``) send no baseline with each evaluation: the
activity reads it from the workflow's ``gate_baseline`` query (queries are not recorded in
history) and pools it in Prometheus, so an evaluation costs the same at 20 and at 2,000
namespaces; they also judge idle namespaces on outbound traffic and readiness (patch
``gate-quiet-namespaces``), record the error budget spent (patch ``gate-budget-spent``) and
evaluate on the window's own clock (patch ``gate-anchored-intervals``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import measure_gate
    from istio_upgrade.models.gate import BaselineRef, BudgetSpent, GateQuery, GateResult
    from istio_upgrade.models.plan import Batch, Plan
    from istio_upgrade.models.progress import BatchProgress, Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows import metrics
    from istio_upgrade.workflows.gate import evaluate_gate
    from istio_upgrade.workflows.phases import labels
    from istio_upgrade.workflows.prometheus_access import prometheus_auth
    from istio_upgrade.workflows.state import UpgradeFailure, UpgradeState
    from istio_upgrade.workflows.steps import run_step

BASELINE_BY_QUERY = "gate-baseline-by-query"
"""Patch: the baseline is read by the activity through ``gate_baseline``, pooled, and no
PromQL text comes back."""
QUIET_NAMESPACES = "gate-quiet-namespaces"
"""Patch: namespaces idle before and after migration are judged on outbound and readiness."""
ANCHORED_INTERVALS = "gate-anchored-intervals"
"""Patch: evaluations run at window_start + k x interval, not interval after the previous."""
BUDGET_SPENT = "gate-budget-spent"
"""Patch: each evaluation's error budget spent goes to the batch's and the upgrade's progress."""


def baseline_of(plan: Plan, batch_index: int) -> list[str]:
    """O of a batch: the namespaces of the plan's later batches (``gate_baseline``)."""
    return [ns for b in plan.batches[batch_index + 1 :] for ns in b.namespaces]


async def soak(
    st: UpgradeState,
    spec: UpgradeSpec,
    plan: Plan,
    batch: Batch,
    bp: BatchProgress,
    pre_end: datetime,
) -> None:
    """Soak ``batch`` until its gate lets it pass; ``extend_soak`` applies meanwhile.

    Args:
        pre_end: When the batch's migration started: the end of its pre-migration window.

    Raises:
        UpgradeFailure: ``GateFailed``, ``GateInconclusive`` or ``Aborted``.
    """
    st.soaking, st.soak_extension = bp, 0.0
    try:
        await _soak_batch(st, spec, plan, batch, bp, pre_end)
    finally:
        st.soaking, st.soak_window = None, None
    # Namespaces migrated per workload keep their own labels: nothing to drift there.
    await labels.hold_on_drift(
        st, spec, plan, batch.labelled_namespaces, f"batch {batch.index} passes its gate"
    )


async def _soak_batch(
    st: UpgradeState,
    spec: UpgradeSpec,
    plan: Plan,
    batch: Batch,
    bp: BatchProgress,
    pre_end: datetime,
) -> None:
    gate = spec.gate
    st.set_batch(bp, "warming_up")
    await st.sleep(gate.warmup_seconds)
    window_start = workflow.now()
    st.soak_window = (window_start, gate.max_soak_seconds)
    st.set_phase(Phase.SOAKING)
    st.set_batch(bp, "soaking")
    by_query = workflow.patched(BASELINE_BY_QUERY)
    quiet = by_query and workflow.patched(QUIET_NAMESPACES)
    budget = by_query and workflow.patched(BUDGET_SPENT)
    later = [] if by_query else baseline_of(plan, batch.index)
    ref = (
        BaselineRef(
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            batch_index=batch.index,
        )
        if by_query
        else None
    )
    results: list[GateResult] = []
    anchored = workflow.patched(ANCHORED_INTERVALS)
    auth = prometheus_auth(spec.prometheus_auth)
    due = window_start
    while True:
        # Every evaluation, the first included, looks back over at least one interval:
        # evaluating at window_start would measure an empty window.
        if anchored:
            # Evaluations on the window's own clock (window_start + k x interval): the time an
            # evaluation takes does not push the next ones back. A tick missed while waiting
            # for an operator is skipped, never caught up with back-to-back evaluations.
            due += timedelta(seconds=gate.interval_seconds)
            if due <= workflow.now():
                due = workflow.now() + timedelta(seconds=gate.interval_seconds)
            await st.sleep((due - workflow.now()).total_seconds())
        else:
            await st.sleep(gate.interval_seconds)
        await st.checkpoint()
        now = workflow.now()
        query = GateQuery(
            prometheus_url=spec.prometheus_url,
            prometheus_auth=auth,
            # The activity needs no alert table: ~0.3 KB per SLO and evaluation less history.
            slos=[s.model_copy(update={"alerts": []}) for s in gate.slos]
            if by_query
            else gate.slos,
            batch_namespaces=[] if by_query else batch.namespaces,
            baseline_namespaces=later,
            new_revision=plan.target_revision,
            old_revision=plan.source_revision,
            window_start=window_start,
            evaluated_at=now,
            short_window_seconds=gate.short_window_seconds,
            pre_migration_start=pre_end - timedelta(seconds=gate.short_window_seconds),
            pre_migration_end=pre_end,
            timeout_seconds=gate.query_timeout_seconds,
            batch_count=len(plan.batches),
            baseline_ref=ref,
            ready_at=bp.ready_at if by_query else None,
        )
        measured = await run_step(
            measure_gate,
            query,
            summary=f"batch {batch.index}: gate evaluation {len(results) + 1}",
            start_to_close=timedelta(seconds=gate.query_timeout_seconds * 8 + 10),
            attempts=3,
        )
        if not measured.batch_namespaces:
            # The activity does not echo the batch (it would be recorded every evaluation).
            measured.batch_namespaces = list(batch.namespaces)
        result = evaluate_gate(gate, measured, results, quiet=quiet)
        result.sequence = len(results) + 1
        metrics.gate_verdict(result.verdict)
        results.append(result)
        bp.gate_results.append(result)
        if budget:
            _record_budget(st, bp, result)
        for name, ns_gate in result.namespaces.items():
            bp.namespace_status[name] = ns_gate.verdict
        st.refresh()
        elapsed = (now - window_start).total_seconds()
        if result.verdict == "FAIL":
            st.set_batch(bp, "failed")
            raise UpgradeFailure(
                f"gate FAILED on batch {batch.index} ({', '.join(batch.namespaces)}) "
                f"at evaluation {result.sequence}: {'; '.join(result.reasons)}",
                "GateFailed",
                result,
            )
        extra = st.soak_extension
        if result.verdict == "PASS" and elapsed >= gate.soak_seconds + extra:
            return
        if result.verdict == "INCONCLUSIVE" and elapsed >= gate.max_soak_seconds + extra:
            why = "; ".join(result.reasons)
            if gate.on_inconclusive == "proceed":
                st.progress.warnings.append(
                    f"batch {batch.index} gate inconclusive after {elapsed:g}s, "
                    f"proceeding as configured: {why}"
                )
                return
            if gate.on_inconclusive == "rollback":
                raise UpgradeFailure(
                    f"gate INCONCLUSIVE on batch {batch.index} after {elapsed:g}s: {why}",
                    "GateInconclusive",
                    result,
                )
            approved = await st.approval(
                f"batch {batch.index} gate inconclusive after {elapsed:g}s ({why}); "
                "approve to continue, extend_soak to keep measuring, or abort to roll back",
                extendable=True,
            )
            if approved:
                return


def _record_budget(st: UpgradeState, bp: BatchProgress, result: GateResult) -> None:
    """The batch's spend since its Ready, and the running total of all migrated batches."""
    if result.budget:
        bp.budget_spent = dict(result.budget)
    if result.budget_total or result.budget:
        spent = st.progress.budget_spent or BudgetSpent()
        if result.budget:
            spent.batches[bp.index] = dict(result.budget)
        if result.budget_total:
            spent.total = dict(result.budget_total)
        st.progress.budget_spent = spent
