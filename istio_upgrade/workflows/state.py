"""What one run of an upgrade knows and what its operators steer, with the waits they affect.

``UpgradeState`` is shared by the workflow's message handlers (``upgrade.py``) and its phases
(``phases/``): progress (the ``progress`` query and the Web UI's details), the plan, the pause,
abort, approval and soak-extension requests, the compensation stack and the cluster lock. Its
waits (:meth:`UpgradeState.checkpoint`, :meth:`~UpgradeState.sleep`,
:meth:`~UpgradeState.approval`) are where those requests take effect. Deterministic code only.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.carryover import Carryover
    from istio_upgrade.models.gate import GateResult
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.progress import (
        AbortRequest,
        ApprovalRecord,
        ApproveRequest,
        BatchProgress,
        BatchStatus,
        ExtendSoakRequest,
        Outcome,
        Phase,
        Progress,
        UpgradeResult,
        progress_markdown,
    )
    from istio_upgrade.models.search import CLUSTER, OUTCOME, PHASE
    from istio_upgrade.models.windows import MaintenanceWindows
    from istio_upgrade.workflows import metrics
    from istio_upgrade.workflows.compensation import Compensations
    from istio_upgrade.workflows.notifications import Notifications

MAINTENANCE_WINDOWS = "maintenance-windows"
"""Patch: the install, each batch and the tag moves start only inside ``spec.windows``."""

MIN_WINDOW_TIMER = timedelta(seconds=1)
"""The shortest timer of a window wait, so that rounding never spins on zero-length timers."""

ENDINGS = {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.DRY_RUN}
"""Phases an upgrade ends in; they are also its ``IstioUpgradeOutcome``."""


class UpgradeFailure(ApplicationError):
    """A reason to roll back, raised inside the workflow."""

    def __init__(self, message: str, kind: str, gate: GateResult | None = None) -> None:
        super().__init__(message, type=kind, non_retryable=True)
        self.gate = gate


class UpgradeState:
    """The state of one run; a continued run starts from the previous run's ``Carryover``."""

    def __init__(self, carried: Carryover | None = None) -> None:
        self.progress = carried.progress if carried is not None else Progress()
        if carried is not None:
            self.progress.runs += 1
            # The carryover names each batch's namespaces once, in its plan.
            for bp, batch in zip(self.progress.batches, carried.plan.batches, strict=False):
                bp.namespaces = bp.namespaces or list(batch.namespaces)
        self.plan: Plan | None = carried.plan if carried is not None else None
        self.paused = False
        self.abort: AbortRequest | None = None
        self.waiting_approval: str | None = None
        self.approved: set[str] = set(carried.approved) if carried is not None else set()
        self.compensations = Compensations()
        self.finished = False
        self.no_return = False
        """The old revision is being removed: too late to roll back."""
        self.soaking: BatchProgress | None = None
        self.soak_extension = 0.0
        self.soak_window: tuple[datetime, float] | None = None
        """When the soaking batch's window opened and how long an INCONCLUSIVE gate may last."""
        self.extensions = 0
        self.uninstall_target = False
        """Whether a rollback removes the target revision (this upgrade installed it)."""
        self.locked = carried.locked if carried is not None else False
        """Whether this upgrade holds the cluster lock (taken before its first write)."""
        self.lock_holder: str | None = carried.lock_holder if carried is not None else None
        """Who this upgrade is in the lock ConfigMap (``identity.upgrade_identity``), once taken."""
        self.steered = False
        """The run is steered by ``IstioCanaryUpgrade._steered``: nothing cancels its steps, a
        cancellation of the workflow becomes an abort (older runs: shielded rollbacks)."""
        self.cancel_requested = False
        """The workflow was cancelled: it rolls back as after an abort, then ends CANCELED."""
        self.notifications = Notifications(self.progress, self.refresh)
        """The receivers of ``spec.notifications`` (configured by the workflow) and the
        notifications in flight."""

    # What the operator messages do (validated by the workflow's handlers) ----------------

    def set_paused(self, paused: bool) -> str:
        self.paused = paused
        self.progress.paused = paused
        self.refresh()
        return "paused: the upgrade holds before its next step" if paused else "resumed"

    def request_abort(self, request: AbortRequest) -> str:
        self.abort = request
        self.refresh()
        return f"aborting: {request.reason}"

    def cancel(self) -> None:
        """The workflow was cancelled: abort (and roll back) unless past the point of no return.

        Cancelling the workflow never cancels the step running: a mutation finishes, a wait is
        interrupted by the abort (``steps.run_step``'s ``interrupt``), and the rollback runs
        to its end.
        """
        first = not self.cancel_requested
        self.cancel_requested = True
        if self.finished or self.abort is not None:
            return
        if self.no_return:
            if first:
                self.progress.warnings.append(
                    "cancel requested while the old revision was being removed: too late to "
                    "roll back, the upgrade finishes"
                )
                self.refresh()
            return
        self.progress.errors.append("cancelled: rolling back")
        self.request_abort(AbortRequest(reason="the workflow was cancelled"))

    def interrupted(self) -> BaseException | None:
        """Why a running forward step must stop now (an abort), or None."""
        if self.abort is not None:
            return UpgradeFailure(f"aborted: {self.abort.reason}", "Aborted")
        return None

    def rollback_retrying(self, message: str | None) -> None:
        """Show (or clear) a rollback step that failed and is being retried."""
        self.progress.waiting_for = message
        self.refresh()

    def extend_soak(self, request: ExtendSoakRequest) -> str:
        bp = self.soaking
        assert bp is not None
        extra = request.seconds
        if (
            self.waiting_approval is not None
            and self.soak_window is not None
            and workflow.patched("extend-soak-from-now")
        ):
            # The batch waits because its INCONCLUSIVE limit passed, perhaps long ago: "300 s
            # more" means 300 s of measuring from now, not past a deadline already gone.
            opened, limit = self.soak_window
            elapsed = (workflow.now() - opened).total_seconds()
            extra += max(0.0, elapsed - (limit + self.soak_extension))
        self.soak_extension += extra
        self.extensions += 1
        bp.soak_extended_seconds += request.seconds
        self.refresh()
        return f"batch {bp.index}: soak extended by {request.seconds:g}s"

    def approve(self, request: ApproveRequest) -> str:
        step = self.waiting_approval or ""
        self.approved.add(step)
        self.progress.approvals.append(
            ApprovalRecord(
                step=step, approver=request.approver, comment=request.comment, at=workflow.now()
            )
        )
        self.refresh()
        return f"approved: {step}"

    # Where the messages take effect ----------------------------------------------------

    async def checkpoint(self, why: str = "paused by an operator") -> None:
        """Honour abort and pause between steps."""
        if self.abort is not None:
            raise UpgradeFailure(f"aborted: {self.abort.reason}", "Aborted")
        if self.paused:
            self.progress.waiting_for = f"resume ({why})"
            self.refresh()
            await workflow.wait_condition(lambda: not self.paused or self.abort is not None)
            self.progress.waiting_for = None
            self.refresh()
            if self.abort is not None:
                raise UpgradeFailure(f"aborted: {self.abort.reason}", "Aborted")

    async def hold(self, why: str) -> None:
        """Pause the upgrade itself, saying why, until an operator resumes or aborts it."""
        self.set_paused(True)
        await self.checkpoint(why)

    async def sleep(self, seconds: float) -> None:
        """A durable timer that an abort interrupts."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.abort is not None, timeout=timedelta(seconds=seconds)
                )
        await self.checkpoint()

    async def window(self, windows: MaintenanceWindows | None, step: str) -> None:
        """Wait until ``windows`` are open, then return so that ``step`` starts inside them.

        Only forward steps call this: a step already running when the window closes goes on
        (a batch finishes its migration, soak and gate), and a rollback never waits. An abort
        interrupts the wait (raising ``Aborted``), a pause holds after it. The progress says
        ``window (<step>), opens at <local time> (<zone>) / <UTC time>`` while it waits.

        Raises:
            UpgradeFailure: ``Aborted``, or ``WindowNeverOpens`` for a calendar that does not
                open within 400 days (validation refuses those; kept for unvalidated input).
        """
        if windows is None or not workflow.patched(MAINTENANCE_WINDOWS):
            return
        while True:
            await self._window_wait(windows, step)
            await self.checkpoint()
            # A pause may have held the step until after the window closed: wait again.
            if windows.is_open(workflow.now()):
                return

    async def _window_wait(self, windows: MaintenanceWindows, step: str) -> None:
        waited = False
        while self.abort is None:
            now = workflow.now()
            opens = windows.next_open(now)
            if opens is None:
                raise UpgradeFailure(
                    f"{step}: the maintenance windows never open again", "WindowNeverOpens"
                )
            if opens <= now:
                break
            waited = True
            text = f"window ({step}), opens at {windows.describe(opens)}"
            excluded = windows.exclusion_at(now)
            if excluded is not None and excluded.reason:
                text += f"; closed for: {excluded.reason}"
            if self.progress.waiting_for != text:
                self.progress.waiting_for = text
                self.refresh()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.abort is not None,
                    timeout=max(opens - now, MIN_WINDOW_TIMER),
                    timeout_summary=f"maintenance window for {step}",
                )
        if waited:
            self.progress.waiting_for = None
            self.refresh()

    async def approval(self, step: str, *, extendable: bool = False) -> bool:
        """Wait until ``step`` is approved; True when it was.

        With ``extendable``, an ``extend_soak`` also ends the wait (returning False): the
        caller goes back to soaking instead of proceeding.
        """
        await self.checkpoint()
        previous = self.progress.phase
        extensions = self.extensions
        self.waiting_approval = step
        self.progress.waiting_for = f"approval: {step}"
        self.set_phase(Phase.WAITING_APPROVAL)
        self._notify_waiting(step, extendable)
        await workflow.wait_condition(
            lambda: (
                step in self.approved
                or self.abort is not None
                or (extendable and self.extensions != extensions)
            )
        )
        self.waiting_approval = None
        self.progress.waiting_for = None
        self.set_phase(previous)
        await self.checkpoint()
        return step in self.approved

    def _notify_waiting(self, step: str, extendable: bool) -> None:
        upgrade = workflow.info().workflow_id
        steps = f"approve with `istio-upgrade approve {upgrade} --reason <why>`"
        if extendable:
            steps += f", keep measuring with `istio-upgrade extend-soak {upgrade} --seconds 300`"
        steps += f", or roll back with `istio-upgrade abort {upgrade} --reason <why>`"
        self.notifications.fire(
            "waiting_for_approval",
            f"The upgrade waits for a person's approval: {step}.",
            next_steps=steps[0].upper() + steps[1:] + ".",
        )

    # Progress --------------------------------------------------------------------------

    def set_phase(self, phase: Phase) -> None:
        changed = self.progress.phase != phase
        self.progress.phase = phase
        self.refresh()
        if changed:
            metrics.phase_entered(phase.value)
        # Only when the starter set the attributes: then the server has them registered.
        if changed and workflow.info().typed_search_attributes.get(CLUSTER) is not None:
            updates = [PHASE.value_set(phase.value)]
            if phase in ENDINGS:
                updates.append(OUTCOME.value_set(phase.value))
            workflow.upsert_search_attributes(updates)

    def set_batch(self, bp: BatchProgress, status: BatchStatus) -> None:
        bp.status = status
        for ns in bp.namespaces:
            if status != "soaking":
                bp.namespace_status[ns] = status
        self.refresh()

    def refresh(self) -> None:
        self.progress.bound()
        self.progress.updated_at = workflow.now()
        workflow.set_current_details(progress_markdown(self.progress))

    def finish(self, phase: Phase) -> None:
        self.finished = True
        self.waiting_approval = None
        self.progress.waiting_for = None
        self.set_phase(phase)

    def result(
        self, outcome: Outcome, summary: str, plan: Plan, report: PrecheckReport
    ) -> UpgradeResult:
        return UpgradeResult(
            outcome=outcome,
            summary=summary,
            upgrade_id=self.progress.upgrade_id,
            source_revision=plan.source_revision or None,
            target_revision=plan.target_revision,
            tags_moved=list(self.progress.tags_moved),
            plan=plan,
            precheck=report,
            warnings=list(self.progress.warnings),
            budget_spent=self.progress.budget_spent,
        )
