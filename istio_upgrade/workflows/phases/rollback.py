"""Roll back: undo what was done (the compensation stack, in reverse), then release the lock.

Runs on any failure, abort or cancellation of the upgrade's guarded part, always to the end.
A steered run (``IstioCanaryUpgrade._steered``) is never cancelled: a cancellation arriving
meanwhile is recorded and changes nothing, and undo steps that fail for a reason that may pass
are retried (``compensation.run_patiently``). Runs recorded before that shield each part with
``asyncio.shield`` — which keeps the undoing task alive but still ends the awaiting caller, so
their later compensations were lost to a second cancellation.
A refused or rolled-back upgrade fails the workflow with a non-retryable ``ApplicationError``
whose type says why and whose first detail is the ``UpgradeResult``.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.gate import GateResult
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows import metrics
    from istio_upgrade.workflows.phases.lock import release_if_clean
    from istio_upgrade.workflows.state import UpgradeFailure, UpgradeState


async def after_cancellation(st: UpgradeState, spec: UpgradeSpec) -> None:
    """The workflow was cancelled: roll back, then let the cancellation end it."""
    st.progress.errors.append("cancelled: rolling back")
    first_error = len(st.progress.errors)
    await roll_back_and_release(st, spec)
    metrics.rollback("incomplete" if st.compensations.incomplete else "complete")
    st.finish(Phase.ROLLED_BACK)
    _notify_rolled_back(st, spec, "cancelled", "Cancelled", st.progress.errors[first_error:])
    await st.notifications.settle()


async def after_failure(
    st: UpgradeState, spec: UpgradeSpec, plan: Plan, report: PrecheckReport, error: FailureError
) -> ApplicationError:
    """A step failed, the gate refused or an operator aborted: roll back.

    Returns:
        The error that fails the workflow: its type says why (``StepFailed`` for a failed
        activity), its first detail is the ``UpgradeResult`` (``ROLLED_BACK``, or ``FAILED``
        when the rollback is incomplete).
    """
    gate: GateResult | None = None
    if isinstance(error, UpgradeFailure):
        kind, message, gate = error.type or "StepFailed", error.message, error.gate
    else:
        kind = "StepFailed"
        message = f"step failed: {error.cause or error}"
    first_error = len(st.progress.errors)
    st.progress.errors.append(message)
    if gate is not None and kind in {"GateFailed", "GateInconclusive"}:
        # Told at once, while the rollback runs: the notification does not wait for it.
        st.notifications.fire(
            "gate_failed",
            f"The safety gate refused the batch ({gate.verdict}): {message}. "
            "The upgrade rolls it back now.",
            verdict=gate.verdict,
            reasons=gate.reasons,
            next_steps="Nothing to do yet: the rollback runs on its own; a notification says "
            "how it ended. Meanwhile, look at the batch's SLOs in the gate's Prometheus.",
        )
    await roll_back_and_release(st, spec)
    problems = st.progress.errors[first_error + 1 :]
    complete = not st.compensations.incomplete
    metrics.rollback("complete" if complete else "incomplete")
    st.finish(Phase.ROLLED_BACK if complete else Phase.FAILED)
    summary = f"rolled back: {message}" if complete else f"rollback INCOMPLETE: {message}"
    if problems:
        summary += f" (rollback problems: {'; '.join(problems)})"
    _notify_rolled_back(st, spec, message, kind, problems)
    await st.notifications.settle()
    failed = st.result("ROLLED_BACK" if complete else "FAILED", summary, plan, report)
    failed.failed_gate = gate
    failed.failed_batch = st.progress.current_batch
    return ApplicationError(summary, failed, type=kind, non_retryable=True)


def _notify_rolled_back(
    st: UpgradeState, spec: UpgradeSpec, why: str, kind: str, problems: list[str]
) -> None:
    """``rollback_completed``, or ``rollback_incomplete`` naming what a person must repair."""
    upgrade = workflow.info().workflow_id
    old = st.progress.source_revision or "the old revision"
    if not st.compensations.incomplete:
        st.notifications.fire(
            "rollback_completed",
            f"The upgrade was rolled back ({kind}): {why}. Every namespace is back on {old}.",
            reasons=[why],
            next_steps=f"Find out why ({kind}; `istio-upgrade status {upgrade}` shows the "
            "gate's numbers and the errors) before starting the upgrade again.",
        )
        return
    st.notifications.fire(
        "rollback_incomplete",
        f"The rollback of the upgrade is INCOMPLETE ({kind}): {why}. The cluster is left "
        "half-migrated and needs a person.",
        reasons=[why, *problems],
        next_steps=f"Repair what the rollback could not undo (the errors of "
        f"`istio-upgrade status {upgrade}`), then release the cluster lock with "
        f"`istio-upgrade unlock --cluster {spec.cluster.name}`.",
    )


async def roll_back_and_release(st: UpgradeState, spec: UpgradeSpec) -> None:
    """Undo what was done, then release the lock (unless the rollback is incomplete)."""
    if st.steered:
        await _roll_back(st)
        await release_if_clean(st, spec)
        return
    await asyncio.shield(asyncio.ensure_future(_roll_back(st)))
    await asyncio.shield(asyncio.ensure_future(release_if_clean(st, spec)))


async def _roll_back(st: UpgradeState) -> None:
    """Run the compensation stack in reverse; a failing step is recorded, the rest still run."""
    st.set_phase(Phase.ROLLING_BACK)
    if st.steered:
        st.set_paused(False)
    else:
        st.paused = False
    retrying = st.rollback_retrying if st.steered else None
    await st.compensations.unwind(st.progress.errors, retrying)
