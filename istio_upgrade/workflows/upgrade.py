"""``IstioCanaryUpgrade``: install a revision beside the old one, migrate, gate, promote, clean up.

Deterministic code only. Activities are called by name (their modules import the
``kubernetes`` client, which has no business inside the workflow sandbox). Every write is
preceded by pushing its compensation, so a failure, an abort or a cancellation at any point
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
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from istio_upgrade.models.activities import (
        LOCK_CONFIGMAP,
        LOCK_DELETE_COMMAND,
        DiagnosticsInput,
        DiagnosticsResult,
        DiscoverInput,
        InstallInput,
        InstallResult,
        LockInput,
        LockResult,
        MoveTagsInput,
        MoveTagsResult,
        RelabelInput,
        RestartInput,
        RestartResult,
        RevisionInput,
        RolloutInput,
        RolloutReport,
        UninstallResult,
        VerifyInput,
        VerifyReport,
        lock_busy_message,
    )
    from istio_upgrade.models.carryover import Carryover
    from istio_upgrade.models.gate import GateMeasurements, GateQuery, GateResult
    from istio_upgrade.models.inventory import ClusterInventory
    from istio_upgrade.models.plan import Batch, NamespaceLabels, Plan, PrecheckReport
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
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.gate import evaluate_gate
    from istio_upgrade.workflows.plan import plan_upgrade
    from istio_upgrade.workflows.retries import ACTIVITY_RETRY
    from istio_upgrade.workflows.revision_use import revision_use

T = TypeVar("T")

WORKFLOW_NAME = "IstioCanaryUpgrade"
TASK_QUEUE = "istio-upgrade"

_ENDINGS = {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.DRY_RUN}
_SHORT = timedelta(minutes=3)
_HEARTBEAT = timedelta(seconds=30)
# Steps that heartbeat per page or namespace: one request may block for a while (request
# timeout, throttling with Retry-After), yet a crashed worker is still noticed in minutes.
_HEARTBEAT_PER_REQUEST = timedelta(minutes=2)


def _removal_command(spec: UpgradeSpec, revision: str) -> str:
    """The command that finishes removing a revision the upgrade had to keep."""
    return f"`istio-upgrade remove-revision --cluster {spec.cluster.name} --revision {revision}`"


class UpgradeFailure(ApplicationError):
    """A reason to roll back, raised inside the workflow."""

    def __init__(self, message: str, kind: str, gate: GateResult | None = None) -> None:
        super().__init__(message, type=kind, non_retryable=True)
        self.gate = gate


@workflow.defn(name=WORKFLOW_NAME)
class IstioCanaryUpgrade:
    """One canary upgrade of one cluster's Istio control plane."""

    @workflow.init
    def __init__(
        self, spec: UpgradeSpec | dict[str, Any], carried: Carryover | None = None
    ) -> None:
        # A continued run takes its state here, before the first signal or update of the run
        # is handled: a message in that first task must see the real progress, not a blank one.
        self._progress = carried.progress if carried is not None else Progress()
        if carried is not None:
            self._progress.runs += 1
        self._plan: Plan | None = carried.plan if carried is not None else None
        self._spec: UpgradeSpec | None = None
        self._paused = False
        self._abort: AbortRequest | None = None
        self._waiting_approval: str | None = None
        self._approved: set[str] = set(carried.approved) if carried is not None else set()
        self._compensations: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._finished = False
        self._no_return = False
        self._rollback_incomplete = False
        self._soaking: BatchProgress | None = None
        self._soak_extension = 0.0
        # When the soaking batch's window opened and how long an INCONCLUSIVE gate may last.
        self._soak_window: tuple[datetime, float] | None = None
        self._extensions = 0
        # Whether a rollback removes the target revision (this upgrade installed it).
        self._uninstall_target = False
        # Whether this upgrade holds the cluster lock (taken before its first write).
        self._locked = carried.locked if carried is not None else False

    # Operator messages ------------------------------------------------------------

    @workflow.query
    def progress(self) -> Progress:
        """The live state: phase, batches, gate evaluations, stragglers, waits."""
        return self._progress

    @workflow.query
    def plan(self) -> Plan | None:
        """The batches, once discovery and planning are done."""
        return self._plan

    @workflow.update
    def pause(self) -> str:
        """Hold before the next step (the running step finishes)."""
        return self._set_paused(True)

    @pause.validator
    def _validate_pause(self) -> None:
        if self._finished:
            raise ValueError("the upgrade has finished; nothing to pause")
        if self._abort is not None:
            raise ValueError(f"the upgrade is aborting ({self._abort.reason}); nothing to pause")
        if self._paused:
            raise ValueError("the upgrade is already paused; resume it to continue")

    @workflow.update
    def resume(self) -> str:
        """Continue after ``pause``."""
        return self._set_paused(False)

    @resume.validator
    def _validate_resume(self) -> None:
        if not self._paused:
            raise ValueError("the upgrade is not paused; nothing to resume")

    @workflow.update
    def approve(self, request: ApproveRequest) -> str:
        """Approve the step the upgrade waits for."""
        return self._do_approve(request)

    @approve.validator
    def _validate_approve(self, request: ApproveRequest) -> None:
        if self._waiting_approval is None:
            raise ValueError(
                f"nothing is waiting for approval (phase {self._progress.phase.value}); "
                "approve applies to an approval gate or a batch whose gate stayed INCONCLUSIVE"
            )

    @workflow.update
    def extend_soak(self, request: ExtendSoakRequest) -> str:
        """Soak the current batch longer before its gate may pass (or its policy applies)."""
        return self._do_extend_soak(request)

    @extend_soak.validator
    def _validate_extend_soak(self, request: ExtendSoakRequest) -> None:
        if self._finished:
            raise ValueError("the upgrade has finished; nothing to soak")
        if self._abort is not None:
            raise ValueError(f"the upgrade is rolling back ({self._abort.reason})")
        if self._soaking is None:
            raise ValueError(
                f"no batch is soaking (phase {self._progress.phase.value}); extend_soak "
                "applies while a batch warms up, soaks or waits after an INCONCLUSIVE gate"
            )

    @workflow.update
    def abort(self, request: AbortRequest) -> str:
        """Stop and roll back everything done so far."""
        return self._do_abort(request)

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        if self._finished:
            raise ValueError("the upgrade has finished; nothing to abort")
        if self._no_return:
            raise ValueError("the old revision is being removed; too late to roll back")
        if self._abort is not None:
            raise ValueError(f"already aborting: {self._abort.reason}")

    @workflow.signal
    def signal_pause(self) -> None:
        """Signal equivalent of the ``pause`` update."""
        if not self._finished:
            self._set_paused(True)

    @workflow.signal
    def signal_resume(self) -> None:
        """Signal equivalent of the ``resume`` update."""
        if self._paused:
            self._set_paused(False)

    @workflow.signal
    def signal_approve(self, request: ApproveRequest) -> None:
        """Signal equivalent of ``approve``; ignored (with a warning) when nothing waits."""
        if self._waiting_approval is None:
            self._progress.warnings.append(
                f"approval by {request.approver} ignored: nothing was waiting"
            )
            return
        self._do_approve(request)

    @workflow.signal
    def signal_abort(self, request: AbortRequest) -> None:
        """Signal equivalent of ``abort``; ignored once the old revision is being removed."""
        if not self._finished and not self._no_return and self._abort is None:
            self._do_abort(request)

    @workflow.signal
    def signal_extend_soak(self, request: ExtendSoakRequest) -> None:
        """Signal equivalent of ``extend_soak``; ignored (with a warning) when nothing soaks."""
        if self._finished or self._abort is not None or self._soaking is None:
            self._progress.warnings.append(
                f"soak extension by {request.requested_by or 'an operator'} ignored: "
                "no batch was soaking"
            )
            return
        self._do_extend_soak(request)

    def _set_paused(self, paused: bool) -> str:
        self._paused = paused
        self._progress.paused = paused
        self._refresh()
        return "paused: the upgrade holds before its next step" if paused else "resumed"

    def _do_abort(self, request: AbortRequest) -> str:
        self._abort = request
        self._refresh()
        return f"aborting: {request.reason}"

    def _do_extend_soak(self, request: ExtendSoakRequest) -> str:
        bp = self._soaking
        assert bp is not None
        extra = request.seconds
        if (
            self._waiting_approval is not None
            and self._soak_window is not None
            and workflow.patched("extend-soak-from-now")
        ):
            # The batch waits because its INCONCLUSIVE limit passed, perhaps long ago: "300 s
            # more" means 300 s of measuring from now, not past a deadline already gone.
            opened, limit = self._soak_window
            elapsed = (workflow.now() - opened).total_seconds()
            extra += max(0.0, elapsed - (limit + self._soak_extension))
        self._soak_extension += extra
        self._extensions += 1
        bp.soak_extended_seconds += request.seconds
        self._refresh()
        return f"batch {bp.index}: soak extended by {request.seconds:g}s"

    def _do_approve(self, request: ApproveRequest) -> str:
        step = self._waiting_approval or ""
        self._approved.add(step)
        self._progress.approvals.append(
            ApprovalRecord(
                step=step, approver=request.approver, comment=request.comment, at=workflow.now()
            )
        )
        self._refresh()
        return f"approved: {step}"

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
        self._set_phase(Phase.VALIDATING)
        if not isinstance(spec, UpgradeSpec):
            try:
                spec = UpgradeSpec.model_validate(spec)
            except ValidationError as error:
                self._finish(Phase.FAILED)
                raise ApplicationError(
                    f"invalid UpgradeSpec: {error}", type="InvalidSpec", non_retryable=True
                ) from None
        self._spec = spec
        if carried is not None:
            return await self._continued(spec, carried)
        info = workflow.info()
        p = self._progress
        p.upgrade_id = info.workflow_id
        p.cluster = spec.cluster.name
        p.target_revision = spec.target_revision
        p.started_at = workflow.now()
        self._set_phase(Phase.DISCOVERING)
        inventory = await self._act(
            "discover",
            DiscoverInput(cluster=spec.cluster, upgrade_id=info.workflow_id),
            ClusterInventory,
            "discover the cluster",
            heartbeats=True,
        )
        self._set_phase(Phase.PLANNING)
        plan, report = plan_upgrade(inventory, spec, info.workflow_id)
        self._plan = plan
        p.source_revision = plan.source_revision or None
        p.warnings += [f.message for f in report.warnings]
        p.batches = [BatchProgress(index=b.index, namespaces=b.namespaces) for b in plan.batches]
        if not report.ok:
            self._finish(Phase.FAILED)
            result = self._result("FAILED", "precheck refused the upgrade", plan, report)
            raise ApplicationError(
                "precheck failed: " + "; ".join(f.message for f in report.errors),
                result,
                type="PrecheckFailed",
                non_retryable=True,
            )
        if spec.dry_run:
            self._finish(Phase.DRY_RUN)
            summary = (
                f"dry run: {len(plan.batches)} batches, {len(plan.namespaces)} namespaces "
                f"from {plan.source_revision} to {plan.target_revision}; nothing was written"
            )
            return self._result("DRY_RUN", summary, plan, report)

        if workflow.patched("cluster-lock"):
            await self._lock(spec, plan, report)
        return await self._guarded(spec, plan, report, inventory.tags, None)

    async def _lock(self, spec: UpgradeSpec, plan: Plan, report: PrecheckReport) -> None:
        """Take the cluster's lock before the first write, or refuse: one upgrade per cluster."""
        lock = await self._act(
            "acquire_cluster_lock",
            LockInput(cluster=spec.cluster, holder=workflow.info().workflow_id),
            LockResult,
            "lock the cluster for this upgrade",
        )
        if not lock.acquired:
            message = lock_busy_message(spec.cluster.name, lock.holder)
            self._finish(Phase.FAILED)
            result = self._result("FAILED", f"refused: {message}", plan, report)
            raise ApplicationError(message, result, type="ClusterBusy", non_retryable=True)
        self._locked = True

    async def _unlock(self) -> None:
        """Release the cluster lock; a failure leaves a warning, never a failed upgrade."""
        if not self._locked:
            return
        assert self._spec is not None
        try:
            await self._act(
                "release_cluster_lock",
                LockInput(cluster=self._spec.cluster, holder=workflow.info().workflow_id),
                bool,
                "release the cluster lock",
            )
            self._locked = False
        except FailureError as error:
            self._progress.warnings.append(
                f"the cluster lock was not released ({error}); "
                + lock_busy_message(self._spec.cluster.name, workflow.info().workflow_id)
            )

    async def _continued(self, spec: UpgradeSpec, carried: Carryover) -> UpgradeResult:
        """Pick up where the previous run of this upgrade continued as new (state: ``__init__``)."""
        self._refresh()
        return await self._guarded(
            spec, carried.plan, carried.report, carried.original_tags, carried
        )

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
            result = await self._upgrade(spec, plan, report, original_tags, carried)
        except asyncio.CancelledError:
            self._progress.errors.append("cancelled: rolling back")
            await self._roll_back_and_release()
            self._finish(Phase.ROLLED_BACK)
            raise
        except FailureError as error:
            gate: GateResult | None = None
            if isinstance(error, UpgradeFailure):
                kind, message, gate = error.type or "StepFailed", error.message, error.gate
            else:
                kind = "StepFailed"
                message = f"step failed: {error.cause or error}"
            first_error = len(self._progress.errors)
            self._progress.errors.append(message)
            await self._roll_back_and_release()
            problems = self._progress.errors[first_error + 1 :]
            complete = not self._rollback_incomplete
            self._finish(Phase.ROLLED_BACK if complete else Phase.FAILED)
            summary = f"rolled back: {message}" if complete else f"rollback INCOMPLETE: {message}"
            if problems:
                summary += f" (rollback problems: {'; '.join(problems)})"
            failed = self._result("ROLLED_BACK" if complete else "FAILED", summary, plan, report)
            failed.failed_gate = gate
            failed.failed_batch = self._progress.current_batch
            raise ApplicationError(summary, failed, type=kind, non_retryable=True) from None
        return result

    async def _roll_back_and_release(self) -> None:
        """Undo what was done, then release the lock; shielded, so that a cancellation
        arriving meanwhile cannot stop the undoing halfway."""
        await asyncio.shield(asyncio.ensure_future(self._rollback()))
        await asyncio.shield(asyncio.ensure_future(self._release_if_clean()))

    async def _release_if_clean(self) -> None:
        """After a rollback: release the lock, unless the cluster is left half-migrated."""
        if not self._rollback_incomplete:
            await self._unlock()
        elif self._locked:
            # Keeping it stops the next upgrade from starting on a cluster that needs a person.
            self._progress.warnings.append(
                f"the cluster lock (ConfigMap istio-system/{LOCK_CONFIGMAP}) is kept because the "
                "rollback is incomplete; once the cluster is repaired, delete it: "
                f"{LOCK_DELETE_COMMAND}"
            )

    async def _upgrade(
        self,
        spec: UpgradeSpec,
        plan: Plan,
        report: PrecheckReport,
        original_tags: dict[str, str],
        carried: Carryover | None,
    ) -> UpgradeResult:
        target = plan.target_revision
        if carried is None:
            await self._install(spec, plan, report)
            first = 0
        else:
            # Rebuild the compensation stack the previous run held, in the same order.
            self._uninstall_target = carried.uninstall_target_on_rollback
            if self._uninstall_target:
                self._push(f"uninstall {target}", lambda: self._uninstall(target))
            first = carried.next_batch
            for done in plan.batches[:first]:
                self._push_batch_rollback(spec, plan, done)

        migrated = [ns for b in plan.batches[:first] for ns in b.namespaces]
        for batch in plan.batches[first:]:
            if batch.index > first and self._run_is_long(spec, batch.index - first):
                await self._continue_as_new(spec, plan, report, original_tags, batch.index)
            if batch.index > 0 and spec.approvals.between_batches:
                await self._approval(f"migrate batch {batch.index}")
            await self._migrate_batch(spec, plan, batch)
            migrated += batch.namespaces

        if spec.approvals.before_promote:
            await self._approval(f"move tags {', '.join(plan.tags_to_move)} to {target}")
        await self._checkpoint()
        self._set_phase(Phase.PROMOTING)
        if plan.tags_to_move:
            self._push("restore tags", lambda: self._restore_tags(original_tags, plan.tags_to_move))
            await self._act(
                "move_tags",
                MoveTagsInput(cluster=spec.cluster, tags=plan.tags_to_move, revision=target),
                MoveTagsResult,
                f"move tags {', '.join(plan.tags_to_move)} to {target}",
            )
            self._progress.tags_moved = list(plan.tags_to_move)

        self._set_phase(Phase.GRACE)
        await self._sleep(spec.cleanup.grace_seconds)
        await self._checkpoint()
        self._no_return = True
        self._compensations.clear()
        self._set_phase(Phase.CLEANING_UP)
        removed, warnings = await self._cleanup(spec, plan.source_revision)
        self._progress.warnings += warnings
        await self._unlock()
        self._finish(Phase.SUCCEEDED)
        summary = (
            f"{len(migrated)} namespaces moved from {plan.source_revision} to {target} in "
            f"{len(plan.batches)} batches; tags {', '.join(plan.tags_to_move) or 'none'} moved; "
            + (
                f"revision {plan.source_revision} removed"
                if removed
                else f"revision {plan.source_revision} kept"
            )
        )
        result = self._result("SUCCEEDED", summary, plan, report)
        result.migrated_namespaces = migrated
        result.old_revision_removed = removed
        return result

    async def _install(self, spec: UpgradeSpec, plan: Plan, report: PrecheckReport) -> None:
        """Install the target revision and wait until its istiod is Ready."""
        target = plan.target_revision
        uid = workflow.info().workflow_id
        await self._checkpoint()
        self._set_phase(Phase.INSTALLING)
        # A target adopted with force existed before this upgrade and may serve namespaces that
        # were already on it; rolling back must not remove a control plane it did not create.
        # Patched so that running upgrades that adopted a revision keep their recorded path.
        adopted = report.target_installed and not report.resumed
        if not spec.rollback.keep_new_revision and not (
            adopted and workflow.patched("keep-adopted-target-on-rollback")
        ):
            self._uninstall_target = True
            self._push(f"uninstall {target}", lambda: self._uninstall(target))
        await self._act(
            "install_revision",
            InstallInput(
                cluster=spec.cluster,
                version=spec.target.version,
                revision=target,
                hub=spec.target.hub,
                installer=spec.installer,
                upgrade_id=uid,
            ),
            InstallResult,
            f"install revision {target}",
        )
        self._set_phase(Phase.WAITING_REVISION)
        await self._act(
            "wait_revision_ready",
            RevisionInput(cluster=spec.cluster, revision=target, timeout_seconds=300),
            type(None),
            f"wait for istiod-{target} Ready",
            long_seconds=300,
            attempts=2,
        )
        if spec.approvals.before_first_batch:
            await self._approval(f"migrate batch 0 to {target}")

    def _run_is_long(self, spec: UpgradeSpec, batches_this_run: int) -> bool:
        """Whether to continue as new before the next batch (history size or the spec says so)."""
        limit = spec.migration.max_batches_per_run
        long = bool(limit and batches_this_run >= limit)
        long = long or workflow.info().is_continue_as_new_suggested()
        # Upgrades recorded before runs could continue as new must replay without doing so:
        # their histories can carry the server's suggestion too.
        return long and workflow.patched("continue-as-new-between-batches")

    async def _continue_as_new(
        self,
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
        await self._checkpoint()
        progress = self._progress.model_copy(deep=True)
        for bp in progress.batches[:next_batch]:
            # Finished batches keep their decisive evaluation: the payload stays small however
            # many batches and evaluations came before.
            bp.gate_results = bp.gate_results[-1:]
        carried = Carryover(
            progress=progress,
            plan=plan,
            report=report,
            original_tags=original_tags,
            next_batch=next_batch,
            uninstall_target_on_rollback=self._uninstall_target,
            approved=sorted(self._approved),
            locked=self._locked,
        )
        workflow.continue_as_new(args=[spec, carried])

    # Batches ----------------------------------------------------------------------

    async def _migrate_batch(self, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
        target = plan.target_revision
        uid = workflow.info().workflow_id
        bp = self._progress.batches[batch.index]
        self._progress.current_batch = batch.index
        await self._checkpoint()
        self._set_phase(Phase.MIGRATING)
        pre_end = workflow.now()
        bp.started_at = pre_end
        self._set_batch(bp, "relabeling")
        self._push_batch_rollback(spec, plan, batch)
        await self._act(
            "relabel_namespaces",
            RelabelInput(
                cluster=spec.cluster,
                labels=[NamespaceLabels(namespace=ns, istio_rev=target) for ns in batch.namespaces],
            ),
            list,
            f"batch {batch.index}: label {len(batch.namespaces)} namespaces istio.io/rev={target}",
        )
        self._set_batch(bp, "restarting")
        restarted = await self._act(
            "restart_workloads",
            RestartInput(
                cluster=spec.cluster,
                namespaces=batch.namespaces,
                stamp=f"{uid}/batch-{batch.index}",
                max_concurrent=spec.migration.max_concurrent_restarts,
            ),
            RestartResult,
            f"batch {batch.index}: restart workloads",
            heartbeats=True,
        )
        bp.restarted = restarted.restarted + restarted.already_restarted
        self._set_batch(bp, "rolling_out")
        await self._settle(spec, batch.namespaces, target, f"batch {batch.index}")
        bp.ready_at = workflow.now()
        await self._soak(spec, plan, batch, bp, pre_end)
        bp.finished_at = workflow.now()
        self._set_batch(bp, "passed")

    async def _settle(
        self, spec: UpgradeSpec, namespaces: list[str], revision: str, label: str
    ) -> None:
        """Wait for the rollouts, then verify every pod's revision; diagnose stragglers."""
        timeout = spec.migration.rollout_timeout_seconds
        rollout = await self._act(
            "wait_rollouts",
            RolloutInput(cluster=spec.cluster, namespaces=namespaces, timeout_seconds=timeout),
            RolloutReport,
            f"{label}: wait for rollouts",
            long_seconds=timeout,
        )
        verified = await self._act(
            "verify_namespaces",
            VerifyInput(cluster=spec.cluster, namespaces=namespaces, expected_revision=revision),
            VerifyReport,
            f"{label}: verify pods run {revision} sidecars",
        )
        self._progress.warnings += [
            f"not restartable, keeps its old proxy: {ref}" for ref in verified.not_restartable
        ]
        if rollout.complete and verified.ok:
            return
        self._progress.stragglers = verified.stragglers
        diag = await self._act(
            "collect_diagnostics",
            DiagnosticsInput(cluster=spec.cluster, stragglers=verified.stragglers[:5]),
            DiagnosticsResult,
            f"{label}: collect diagnostics",
        )
        self._progress.diagnostics = diag.diagnostics
        problems = rollout.pending[:5] + [
            f"{s.namespace}/{s.pod}: {s.reason}" for s in verified.stragglers[:5]
        ]
        raise UpgradeFailure(
            f"{label} did not settle on {revision} within {timeout:g}s: {'; '.join(problems)}",
            "RolloutFailed",
        )

    async def _soak(
        self, spec: UpgradeSpec, plan: Plan, batch: Batch, bp: BatchProgress, pre_end: datetime
    ) -> None:
        self._soaking, self._soak_extension = bp, 0.0
        try:
            await self._soak_batch(spec, plan, batch, bp, pre_end)
        finally:
            self._soaking, self._soak_window = None, None

    async def _soak_batch(
        self, spec: UpgradeSpec, plan: Plan, batch: Batch, bp: BatchProgress, pre_end: datetime
    ) -> None:
        gate = spec.gate
        self._set_batch(bp, "warming_up")
        await self._sleep(gate.warmup_seconds)
        window_start = workflow.now()
        self._soak_window = (window_start, gate.max_soak_seconds)
        self._set_phase(Phase.SOAKING)
        self._set_batch(bp, "soaking")
        later = [ns for b in plan.batches[batch.index + 1 :] for ns in b.namespaces]
        results: list[GateResult] = []
        while True:
            # Every evaluation, the first included, looks back over at least one interval:
            # evaluating at window_start would measure an empty window.
            await self._sleep(gate.interval_seconds)
            await self._checkpoint()
            now = workflow.now()
            query = GateQuery(
                prometheus_url=spec.prometheus_url,
                slos=gate.slos,
                batch_namespaces=batch.namespaces,
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
            )
            measured = await self._act(
                "measure_gate",
                query,
                GateMeasurements,
                f"batch {batch.index}: gate evaluation {len(results) + 1}",
                start_to_close=timedelta(seconds=gate.query_timeout_seconds * 8 + 10),
                attempts=3,
            )
            result = evaluate_gate(gate, measured, results)
            result.sequence = len(results) + 1
            results.append(result)
            bp.gate_results.append(result)
            for name, ns_gate in result.namespaces.items():
                bp.namespace_status[name] = ns_gate.verdict
            self._refresh()
            elapsed = (now - window_start).total_seconds()
            if result.verdict == "FAIL":
                self._set_batch(bp, "failed")
                raise UpgradeFailure(
                    f"gate FAILED on batch {batch.index} ({', '.join(batch.namespaces)}) "
                    f"at evaluation {result.sequence}: {'; '.join(result.reasons)}",
                    "GateFailed",
                    result,
                )
            extra = self._soak_extension
            if result.verdict == "PASS" and elapsed >= gate.soak_seconds + extra:
                return
            if result.verdict == "INCONCLUSIVE" and elapsed >= gate.max_soak_seconds + extra:
                why = "; ".join(result.reasons)
                if gate.on_inconclusive == "proceed":
                    self._progress.warnings.append(
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
                approved = await self._approval(
                    f"batch {batch.index} gate inconclusive after {elapsed:g}s ({why}); "
                    "approve to continue, extend_soak to keep measuring, or abort to roll back",
                    extendable=True,
                )
                if approved:
                    return

    # Promote and cleanup -------------------------------------------------------------

    async def _cleanup(self, spec: UpgradeSpec, old: str) -> tuple[bool, list[str]]:
        """Remove the old revision if nothing uses it; (removed, warnings)."""
        if spec.cleanup.keep_old_revision:
            return False, [f"revision {old} kept (cleanup.keep_old_revision)"]
        try:
            return await self._remove_old(spec, old)
        except FailureError as error:
            # Every namespace is on the new revision and the tags have moved: the upgrade
            # succeeded. Only the old control plane's removal did not; say how to finish it.
            cause = f": {error.cause}" if error.cause else ""
            return False, [
                f"revision {old} kept: removing it failed ({error}{cause}); once the cause is "
                f"fixed, run {_removal_command(spec, old)}"
            ]

    async def _remove_old(self, spec: UpgradeSpec, old: str) -> tuple[bool, list[str]]:
        blockers, warnings = await revision_use(spec.cluster, old, spec.prometheus_url)
        if blockers:
            warnings.append(
                f"revision {old} kept, still in use: {'; '.join(blockers)}; once nothing uses "
                f"it, run {_removal_command(spec, old)}"
            )
            return False, warnings
        await self._uninstall(old)
        return True, warnings

    async def _uninstall(self, revision: str) -> None:
        assert self._spec is not None
        await self._act(
            "uninstall_revision",
            RevisionInput(cluster=self._spec.cluster, revision=revision),
            UninstallResult,
            f"uninstall revision {revision}",
        )

    async def _restore_tags(self, original: dict[str, str], tags: list[str]) -> None:
        assert self._spec is not None
        by_revision: dict[str | None, list[str]] = {}
        for tag in tags:
            by_revision.setdefault(original.get(tag), []).append(tag)
        for revision, group in by_revision.items():
            await self._act(
                "move_tags",
                MoveTagsInput(cluster=self._spec.cluster, tags=group, revision=revision),
                MoveTagsResult,
                f"restore tags {', '.join(group)} to {revision or 'absent'}",
            )
        self._progress.tags_moved = []

    async def _restore_batch(self, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
        bp = self._progress.batches[batch.index]
        self._set_batch(bp, "rolling_back")
        uid = workflow.info().workflow_id
        await self._act(
            "relabel_namespaces",
            RelabelInput(cluster=spec.cluster, labels=batch.original_labels),
            list,
            f"rollback batch {batch.index}: restore original labels",
        )
        await self._act(
            "restart_workloads",
            RestartInput(
                cluster=spec.cluster,
                namespaces=batch.namespaces,
                stamp=f"{uid}/rollback-{batch.index}",
                max_concurrent=spec.migration.max_concurrent_restarts,
            ),
            RestartResult,
            f"rollback batch {batch.index}: restart workloads",
            heartbeats=True,
        )
        try:
            await self._settle(
                spec, batch.namespaces, plan.source_revision, f"rollback of batch {batch.index}"
            )
        except UpgradeFailure as error:
            self._progress.errors.append(error.message)
            self._rollback_incomplete = True
            return
        self._set_batch(bp, "rolled_back")

    async def _rollback(self) -> None:
        """Run the compensation stack in reverse; a failing step is recorded, the rest still run."""
        self._set_phase(Phase.ROLLING_BACK)
        self._paused = False
        while self._compensations:
            label, step = self._compensations.pop()
            if label.startswith("uninstall") and self._rollback_incomplete:
                # Pods still on the new revision need its istiod (and its webhook for restarts).
                self._progress.errors.append(
                    f"skipped {label!r}: some namespaces did not return to the old revision"
                )
                continue
            try:
                await step()
            except FailureError as error:
                self._rollback_incomplete = True
                cause = f": {error.cause}" if error.cause else ""
                self._progress.errors.append(f"rollback step {label!r} failed: {error}{cause}")

    # Helpers ------------------------------------------------------------------------

    def _push(self, label: str, step: Callable[[], Awaitable[None]]) -> None:
        self._compensations.append((label, step))

    def _push_batch_rollback(self, spec: UpgradeSpec, plan: Plan, batch: Batch) -> None:
        self._push(f"roll back batch {batch.index}", lambda: self._restore_batch(spec, plan, batch))

    async def _act(
        self,
        name: str,
        arg: Any,
        result_type: type[T],
        summary: str,
        *,
        long_seconds: float | None = None,
        start_to_close: timedelta = _SHORT,
        attempts: int | None = None,
        heartbeats: bool = False,
    ) -> T:
        """Run one activity; ``long_seconds`` (waits) and ``heartbeats`` ask for a heartbeat
        timeout, so that a crashed worker's attempt is retried before its start-to-close
        timeout runs out."""
        retry = ACTIVITY_RETRY
        if attempts is not None:
            retry = dataclasses.replace(ACTIVITY_RETRY, maximum_attempts=attempts)
        result: T = await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=(
                timedelta(seconds=long_seconds + 120) if long_seconds else start_to_close
            ),
            heartbeat_timeout=(
                _HEARTBEAT if long_seconds else _HEARTBEAT_PER_REQUEST if heartbeats else None
            ),
            retry_policy=retry,
            summary=summary,
        )
        return result

    async def _checkpoint(self) -> None:
        """Honour abort and pause between steps."""
        if self._abort is not None:
            raise UpgradeFailure(f"aborted: {self._abort.reason}", "Aborted")
        if self._paused:
            self._progress.waiting_for = "resume (paused by an operator)"
            self._refresh()
            await workflow.wait_condition(lambda: not self._paused or self._abort is not None)
            self._progress.waiting_for = None
            self._refresh()
            if self._abort is not None:
                raise UpgradeFailure(f"aborted: {self._abort.reason}", "Aborted")

    async def _sleep(self, seconds: float) -> None:
        """A durable timer that an abort interrupts."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._abort is not None, timeout=timedelta(seconds=seconds)
                )
        await self._checkpoint()

    async def _approval(self, step: str, *, extendable: bool = False) -> bool:
        """Wait until ``step`` is approved; True when it was.

        With ``extendable``, an ``extend_soak`` also ends the wait (returning False): the
        caller goes back to soaking instead of proceeding.
        """
        await self._checkpoint()
        previous = self._progress.phase
        extensions = self._extensions
        self._waiting_approval = step
        self._progress.waiting_for = f"approval: {step}"
        self._set_phase(Phase.WAITING_APPROVAL)
        await workflow.wait_condition(
            lambda: (
                step in self._approved
                or self._abort is not None
                or (extendable and self._extensions != extensions)
            )
        )
        self._waiting_approval = None
        self._progress.waiting_for = None
        self._set_phase(previous)
        await self._checkpoint()
        return step in self._approved

    def _set_phase(self, phase: Phase) -> None:
        changed = self._progress.phase != phase
        self._progress.phase = phase
        self._refresh()
        # Only when the starter set the attributes: then the server has them registered.
        if changed and workflow.info().typed_search_attributes.get(CLUSTER) is not None:
            updates = [PHASE.value_set(phase.value)]
            if phase in _ENDINGS:
                updates.append(OUTCOME.value_set(phase.value))
            workflow.upsert_search_attributes(updates)

    def _set_batch(self, bp: BatchProgress, status: BatchStatus) -> None:
        bp.status = status
        for ns in bp.namespaces:
            if status != "soaking":
                bp.namespace_status[ns] = status
        self._refresh()

    def _refresh(self) -> None:
        self._progress.updated_at = workflow.now()
        workflow.set_current_details(progress_markdown(self._progress))

    def _finish(self, phase: Phase) -> None:
        self._finished = True
        self._waiting_approval = None
        self._progress.waiting_for = None
        self._set_phase(phase)

    def _result(
        self, outcome: Outcome, summary: str, plan: Plan, report: PrecheckReport
    ) -> UpgradeResult:
        return UpgradeResult(
            outcome=outcome,
            summary=summary,
            upgrade_id=self._progress.upgrade_id,
            source_revision=plan.source_revision or None,
            target_revision=plan.target_revision,
            tags_moved=list(self._progress.tags_moved),
            plan=plan,
            precheck=report,
            warnings=list(self._progress.warnings),
        )
