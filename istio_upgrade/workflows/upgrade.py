"""``IstioCanaryUpgrade``: install a revision beside the old one, migrate, gate, promote, clean up.

Deterministic code only. This module strings the phases together (``phases/``: discover,
lock, install, migrate, soak, handover, promote, cleanup, rollback) and answers the operator
messages; activities are called by reference to their typed stubs
(``activities/interface.py``) through ``steps.run_step``. Every write is preceded by pushing
its compensation (``compensation.py``), so a failure, an abort or a cancellation at any point
rolls back exactly what was done — in reverse order, shielded from cancellation.

Failure contract: a successful upgrade or a dry run *returns* an ``UpgradeResult``; a rolled
back or refused upgrade *fails* the workflow with a non-retryable ``ApplicationError`` whose
``type`` says why (``PrecheckFailed``, ``ClusterBusy``, ``GateFailed``, ``GateInconclusive``,
``RolloutFailed``, ``Aborted``, ``StepFailed``), whose message names the gate and its numbers,
and whose first detail is the ``UpgradeResult`` (outcome ``ROLLED_BACK`` or ``FAILED``). The
Web UI shows red.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from istio_upgrade.models.carryover import Carryover
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.progress import (
        AbortRequest,
        ApproveRequest,
        ExtendSoakRequest,
        Phase,
        Progress,
        UpgradeResult,
    )
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.compensation import describe
    from istio_upgrade.workflows.phases import (
        cleanup,
        discover,
        handover,
        install,
        lock,
        migrate,
        promote,
        rollback,
    )
    from istio_upgrade.workflows.state import UpgradeFailure, UpgradeState

UNPLANNED = "unplanned-failure"
"""Patch: a failing discovery or planning step ends the upgrade in phase FAILED, saying why."""

STEERED = "steered-cancellation"
"""Patch: cancellation is an abort and nothing cancels a running step (``_steered``)."""

WORKFLOW_NAME = "IstioCanaryUpgrade"
TASK_QUEUE = "istio-upgrade"

__all__ = ["TASK_QUEUE", "WORKFLOW_NAME", "IstioCanaryUpgrade", "UpgradeFailure"]


@workflow.defn(name=WORKFLOW_NAME)
class IstioCanaryUpgrade:
    """One canary upgrade of one cluster's Istio control plane."""

    @workflow.init
    def __init__(
        self, spec: UpgradeSpec | dict[str, Any], carried: Carryover | None = None
    ) -> None:
        # A continued run takes its state here, before the first signal or update of the run
        # is handled: a message in that first task must see the real progress, not a blank one.
        self._state = UpgradeState(carried)
        self.activity_task_queue: str | None = None
        """Task queue of the steps that name no cluster (``steps.activity_task_queue``)."""

    # Operator messages ------------------------------------------------------------

    @workflow.query
    def progress(self) -> Progress:
        """The live state: phase, batches, gate evaluations, stragglers, waits."""
        return self._state.progress

    @workflow.query
    def plan(self) -> Plan | None:
        """The batches, once discovery and planning are done."""
        return self._state.plan

    @workflow.query
    def gate_baseline(self, batch_index: int) -> list[str]:
        """The gate's baseline of a batch: the namespaces of the plan's later batches.

        ``measure_gate`` reads it here rather than in its input, which history records at
        every evaluation; empty before planning.
        """
        plan = self._state.plan
        if plan is None:
            return []
        return [ns for b in plan.batches[batch_index + 1 :] for ns in b.namespaces]

    @workflow.update
    def pause(self) -> str:
        """Hold before the next step (the running step finishes)."""
        return self._state.set_paused(True)

    @pause.validator
    def _validate_pause(self) -> None:
        if self._state.finished:
            raise ValueError("the upgrade has finished; nothing to pause")
        if self._state.abort is not None:
            raise ValueError(
                f"the upgrade is aborting ({self._state.abort.reason}); nothing to pause"
            )
        if self._state.paused:
            raise ValueError("the upgrade is already paused; resume it to continue")

    @workflow.update
    def resume(self) -> str:
        """Continue after ``pause``."""
        return self._state.set_paused(False)

    @resume.validator
    def _validate_resume(self) -> None:
        if not self._state.paused:
            raise ValueError("the upgrade is not paused; nothing to resume")

    @workflow.update
    def approve(self, request: ApproveRequest) -> str:
        """Approve the step the upgrade waits for."""
        return self._state.approve(request)

    @approve.validator
    def _validate_approve(self, request: ApproveRequest) -> None:
        if self._state.waiting_approval is None:
            raise ValueError(
                f"nothing is waiting for approval (phase {self._state.progress.phase.value}); "
                "approve applies to an approval gate or a batch whose gate stayed INCONCLUSIVE"
            )

    @workflow.update
    def extend_soak(self, request: ExtendSoakRequest) -> str:
        """Soak the current batch longer before its gate may pass (or its policy applies)."""
        return self._state.extend_soak(request)

    @extend_soak.validator
    def _validate_extend_soak(self, request: ExtendSoakRequest) -> None:
        if self._state.finished:
            raise ValueError("the upgrade has finished; nothing to soak")
        if self._state.abort is not None:
            raise ValueError(f"the upgrade is rolling back ({self._state.abort.reason})")
        if self._state.soaking is None:
            raise ValueError(
                f"no batch is soaking (phase {self._state.progress.phase.value}); extend_soak "
                "applies while a batch warms up, soaks or waits after an INCONCLUSIVE gate"
            )

    @workflow.update
    def abort(self, request: AbortRequest) -> str:
        """Stop and roll back everything done so far."""
        return self._state.request_abort(request)

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        if self._state.finished:
            raise ValueError("the upgrade has finished; nothing to abort")
        if self._state.no_return:
            raise ValueError("the old revision is being removed; too late to roll back")
        if self._state.abort is not None:
            raise ValueError(f"already aborting: {self._state.abort.reason}")

    @workflow.signal
    def signal_pause(self) -> None:
        """Signal equivalent of the ``pause`` update."""
        if not self._state.finished:
            self._state.set_paused(True)

    @workflow.signal
    def signal_resume(self) -> None:
        """Signal equivalent of the ``resume`` update."""
        if self._state.paused:
            self._state.set_paused(False)

    @workflow.signal
    def signal_approve(self, request: ApproveRequest) -> None:
        """Signal equivalent of ``approve``; ignored (with a warning) when nothing waits."""
        if self._state.waiting_approval is None:
            self._state.progress.warnings.append(
                f"approval by {request.approver} ignored: nothing was waiting"
            )
            return
        self._state.approve(request)

    @workflow.signal
    def signal_abort(self, request: AbortRequest) -> None:
        """Signal equivalent of ``abort``; ignored once the old revision is being removed."""
        if not self._state.finished and not self._state.no_return and self._state.abort is None:
            self._state.request_abort(request)

    @workflow.signal
    def signal_extend_soak(self, request: ExtendSoakRequest) -> None:
        """Signal equivalent of ``extend_soak``; ignored (with a warning) when nothing soaks."""
        if self._state.finished or self._state.abort is not None or self._state.soaking is None:
            self._state.progress.warnings.append(
                f"soak extension by {request.requested_by or 'an operator'} ignored: "
                "no batch was soaking"
            )
            return
        self._state.extend_soak(request)

    # Main -------------------------------------------------------------------------

    @workflow.run
    async def run(
        self, spec: UpgradeSpec | dict[str, Any], carried: Carryover | None = None
    ) -> UpgradeResult:
        """Upgrade the cluster described by ``spec``.

        Args:
            spec: The upgrade; a JSON object that is not a valid ``UpgradeSpec`` (e.g. typed
                into the Web UI's start form) fails the workflow with ``InvalidSpec``.
            carried: Set only by the upgrade itself when it continues as new between batches.

        Returns:
            The result of a successful upgrade or a dry run.

        Raises:
            ApplicationError: Non-retryable, when the upgrade was refused or rolled back.
        """
        st = self._state
        st.set_phase(Phase.VALIDATING)
        spec = self._validated(spec)
        self.activity_task_queue = spec.cluster.task_queue
        if carried is not None:
            # Pick up where the previous run continued as new (its state: ``__init__``).
            st.refresh()
            guarded = self._guarded(
                spec, carried.plan, carried.report, carried.original_tags, carried
            )
            if workflow.patched(STEERED):
                return await self._steered(guarded)
            return await guarded
        try:
            tags, plan, report = await discover.discover_and_plan(st, spec)
        except FailureError as error:
            unplanned = self._unplanned(error)
            if unplanned is error:
                raise
            raise unplanned from None
        if spec.dry_run:
            st.finish(Phase.DRY_RUN)
            summary = (
                f"dry run: {len(plan.batches)} batches, {len(plan.namespaces)} namespaces "
                f"from {plan.source_revision} to {plan.target_revision}; nothing was written"
            )
            return st.result("DRY_RUN", summary, plan, report)
        if workflow.patched(STEERED):
            # From the lock on, nothing cancels a step: a lock taken by an activity that
            # finished after a cancellation must be released by the rollback, not leaked.
            return await self._steered(self._locked(spec, plan, report, tags))
        if workflow.patched("cluster-lock"):
            await lock.acquire(st, spec, plan, report)
        return await self._guarded(spec, plan, report, tags, None)

    async def _locked(
        self, spec: UpgradeSpec, plan: Plan, report: PrecheckReport, tags: dict[str, str]
    ) -> UpgradeResult:
        if workflow.patched("cluster-lock"):
            await lock.acquire(self._state, spec, plan, report)
        return await self._guarded(spec, plan, report, tags, None)

    async def _steered(self, work: Coroutine[Any, Any, UpgradeResult]) -> UpgradeResult:
        """Run ``work`` to its end, turning a cancellation of the workflow into an abort.

        Temporal delivers a cancellation by cancelling the workflow's main task, which would
        reach whatever step is awaited: a mutation, a wait, or an undo halfway through a
        rollback. Here the upgrade runs in a task of its own that nothing cancels; a
        cancellation only requests an abort (``UpgradeState.cancel``), which stops a running
        wait and rolls back like any abort, to the end. The workflow then ends CANCELED, its
        phase and outcome saying whether the rollback completed.
        """
        st = self._state
        st.steered = True
        task = asyncio.ensure_future(work)
        while True:
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    # The run itself is torn down (the worker evicts it from its cache): there
                    # is nothing left to steer, and looping would spin.
                    raise
                st.cancel()
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()  # the next await must not end at once
                continue
            except FailureError:
                if st.cancel_requested:
                    # Ends the workflow CANCELED; the progress keeps the rollback's outcome.
                    raise asyncio.CancelledError("cancelled and rolled back") from None
                raise
            return result

    def _unplanned(self, error: FailureError) -> BaseException:
        """A step of discovery or planning kept failing: nothing was written; say so."""
        st = self._state
        if st.finished or is_cancelled_exception(error) or not workflow.patched(UNPLANNED):
            return error  # a precheck refusal (already reported), a cancel, or older code
        if isinstance(error, ActivityError) and error.retry_state == RetryState.CANCEL_REQUESTED:
            # Cancelled while the step's worker was gone: the step ended by its timeout, but
            # what ended the upgrade is the cancellation (nothing was written yet).
            return asyncio.CancelledError("cancelled before any write")
        message = f"discovery or planning failed, nothing was written: {describe(error)}"
        st.progress.errors.append(message)
        st.finish(Phase.FAILED)
        # The activity's own error type (KubeconfigError, Forbidden …) says what to fix.
        cause = error.cause
        kind = cause.type if isinstance(cause, ApplicationError) and cause.type else "StepFailed"
        return ApplicationError(message, type=kind, non_retryable=True)

    def _validated(self, spec: UpgradeSpec | dict[str, Any]) -> UpgradeSpec:
        if isinstance(spec, UpgradeSpec):
            return spec
        try:
            return UpgradeSpec.model_validate(spec)
        except ValidationError as error:
            self._state.finish(Phase.FAILED)
            raise ApplicationError(
                f"invalid UpgradeSpec: {error}", type="InvalidSpec", non_retryable=True
            ) from None

    async def _guarded(
        self,
        spec: UpgradeSpec,
        plan: Plan,
        report: PrecheckReport,
        original_tags: dict[str, str],
        carried: Carryover | None,
    ) -> UpgradeResult:
        """Run the upgrade; on failure, abort or cancellation roll back what was done."""
        try:
            return await self._upgrade(spec, plan, report, original_tags, carried)
        except asyncio.CancelledError:
            await rollback.after_cancellation(self._state, spec)
            raise
        except FailureError as error:
            raise await rollback.after_failure(self._state, spec, plan, report, error) from None

    async def _upgrade(
        self,
        spec: UpgradeSpec,
        plan: Plan,
        report: PrecheckReport,
        original_tags: dict[str, str],
        carried: Carryover | None,
    ) -> UpgradeResult:
        """Install (or resume), migrate batch by batch, promote, clean up."""
        st = self._state
        if carried is None:
            await install.install_target(st, spec, plan, report)
            first = 0
        else:
            first = handover.resume(st, spec, plan, carried)

        migrated = [ns for b in plan.batches[:first] for ns in b.namespaces]
        for batch in plan.batches[first:]:
            if batch.index > first and handover.run_is_long(spec, batch.index - first):
                await handover.continue_as_new(st, spec, plan, report, original_tags, batch.index)
            if batch.index > 0 and spec.approvals.between_batches:
                await st.approval(f"migrate batch {batch.index}")
            # After the approval: the batch itself must start inside a window.
            await st.window(spec.windows, f"batch {batch.index}")
            await migrate.migrate_batch(st, spec, plan, batch)
            migrated += batch.namespaces

        await promote.promote(st, spec, plan, original_tags)
        removed = await cleanup.clean_up(st, spec, plan)
        await lock.release(st, spec)
        st.finish(Phase.SUCCEEDED)
        old, target = plan.source_revision, plan.target_revision
        summary = (
            f"{len(migrated)} namespaces moved from {old} to {target} in "
            f"{len(plan.batches)} batches; tags {', '.join(plan.tags_to_move) or 'none'} moved; "
            + (f"revision {old} removed" if removed else f"revision {old} kept")
        )
        result = st.result("SUCCEEDED", summary, plan, report)
        result.migrated_namespaces = migrated
        result.old_revision_removed = removed
        return result
