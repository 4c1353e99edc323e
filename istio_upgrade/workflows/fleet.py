"""``FleetRollout``: upgrade many clusters stage by stage, a child ``IstioCanaryUpgrade`` each.

Deterministic code only. Stages run in order; the groups of a stage side by side, at most
``max_parallel`` clusters of a group at once. Every cluster's upgrade is a child workflow with
the single-cluster id ``istio-upgrade.<cluster>.<revision>`` and ``ParentClosePolicy
.REQUEST_CANCEL``: a terminated or timed-out fleet asks its children to cancel, and a cancelled
upgrade rolls back to the end (it never is killed mid-rollback). When that id already runs —
the cluster is being upgraded by hand or by another fleet — the fleet follows that run from
outside (``follow_upgrade``) and counts it like a child.

Failure contract: a fleet whose every cluster succeeded *returns* a ``FleetResult``; a fleet
stopped by its failure budget or an abort *fails* with a non-retryable ``ApplicationError``
(``FailureBudgetExceeded``, ``Aborted``, ``ClustersFailed``) whose first detail is the result.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from istio_upgrade.activities.interface import follow_upgrade
    from istio_upgrade.models.fleet import (
        ENDED_STATES,
        FAILED_STATES,
        ClusterProgress,
        FleetAbortRequest,
        FleetApproveRequest,
        FleetCarryover,
        FleetPhase,
        FleetProgress,
        FleetResult,
        FleetSpec,
        FollowInput,
        GroupLayout,
        StageLayout,
        window_opens_at,
    )
    from istio_upgrade.models.progress import AbortRequest
    from istio_upgrade.models.search import CLUSTER, FLEET, OUTCOME, PHASE, TARGET_REVISION
    from istio_upgrade.models.spec import workflow_id_for
    from istio_upgrade.workflows.continuation import newer_version_current, next_run_behavior
    from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

WORKFLOW_NAME = "FleetRollout"

FOLLOW_TIMEOUT = timedelta(days=30)
"""How long the fleet follows an upgrade it did not start (approvals may keep it for days)."""
FOLLOW_HEARTBEAT = timedelta(seconds=30)
MAX_TABLE_ROWS = 100
"""Clusters listed in the Web UI's details (running, waiting and failed ones first)."""
MAX_HISTORY_EVENTS = 20_000
"""Continue as new between stages past this many events, even before Temporal suggests it."""

__all__ = ["WORKFLOW_NAME", "FleetRollout", "fleet_markdown"]


MESH_PRIMARIES_FIRST = "mesh-primaries-first"
"""Patch: a remote whose primaries did not all upgrade is skipped, never started."""


def _outcome_of_child_failure(error: ChildWorkflowError) -> tuple[str, str]:
    cause = error.cause
    name = type(cause).__name__
    if name == "CancelledError":
        return "CANCELED", "cancelled"
    if name == "TerminatedError":
        return "FAILED", "terminated"
    if isinstance(cause, ApplicationError):
        outcome: Any = None
        if cause.details:
            detail = cause.details[0]
            outcome = detail.get("outcome") if isinstance(detail, dict) else None
        if outcome not in {"ROLLED_BACK", "FAILED"}:
            outcome = "FAILED"
        return str(outcome), f"{cause.type or 'failed'}: {cause.message}"
    return "FAILED", str(cause or error)


def _budget_of_child_failure(error: ChildWorkflowError) -> dict[str, float]:
    """The error budget a failed child spent, from the ``UpgradeResult`` its failure carries."""
    cause = error.cause
    if not isinstance(cause, ApplicationError) or not cause.details:
        return {}
    detail = cause.details[0]
    spent = detail.get("budget_spent") if isinstance(detail, dict) else None
    total = spent.get("total") if isinstance(spent, dict) else None
    if not isinstance(total, dict):
        return {}
    return {str(k): float(v) for k, v in total.items() if isinstance(v, int | float)}


def _as_spec(spec: FleetSpec | dict[str, Any]) -> FleetSpec | str:
    """The spec, validated (a JSON object from the Web UI or a start with one argument), or
    why it is not valid."""
    if isinstance(spec, FleetSpec):
        return spec
    try:
        return FleetSpec.model_validate(spec)
    except ValidationError as error:
        return str(error)


def fleet_markdown(progress: FleetProgress, namespace: str) -> str:
    """The Web UI's current details: a cluster x state table, each upgrade id a link."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(progress.counts().items()))
    lines = [
        f"**Fleet** `{progress.fleet}` → `{progress.target_revision}`: **{progress.phase}**, "
        f"stage `{progress.stage}`; failures {progress.failures}/{progress.budget_allowed} "
        f"allowed" + (" (budget exceeded)" if progress.budget_exceeded else ""),
        "",
        counts,
        "",
    ]
    if progress.waiting:
        lines += [f"Waiting: {progress.waiting}", ""]
    lines += [
        "| cluster | stage | group | state | upgrade | budget spent | note |",
        "|---|---|---|---|---|---|---|",
    ]
    # Clusters that need eyes first; a large fleet shows at most MAX_TABLE_ROWS of them.
    order = {"RUNNING": 0, "FOLLOWING": 0, "WAITING_WINDOW": 1, "ROLLED_BACK": 2, "FAILED": 2,
             "CANCELED": 2}  # fmt: skip
    shown = sorted(progress.clusters, key=lambda ln: order.get(ln.state, 3))
    if len(shown) <= MAX_TABLE_ROWS:
        shown = progress.clusters
    for line in shown[:MAX_TABLE_ROWS]:
        link = (
            f"[{line.upgrade_id}](/namespaces/{namespace}/workflows/{line.upgrade_id})"
            if line.upgrade_id
            else ""
        )
        note = line.note.replace("|", "/")
        if line.opens_at is not None and line.state == "WAITING_WINDOW":
            note = f"window opens at {line.opens_at.isoformat()}"
        spent = ", ".join(f"{slo} {v * 100:.3g}%" for slo, v in line.budget_spent.items())
        lines.append(
            f"| {line.cluster} | {line.stage} | {line.group} | {line.state} | {link} | {spent} "
            f"| {note} |"
        )
    if len(shown) > MAX_TABLE_ROWS:
        lines.append(f"\n… and {len(shown) - MAX_TABLE_ROWS} more (see the progress query)")
    return "\n".join(lines)


@workflow.defn(name=WORKFLOW_NAME)
class FleetRollout:
    """Roll one Istio revision over a fleet of clusters, stage by stage."""

    @workflow.init
    def __init__(
        self, spec: FleetSpec | dict[str, Any], carried: FleetCarryover | None = None
    ) -> None:
        # A start with only the spec arrives as a dict: the SDK drops the type hints when the
        # arguments are fewer than the parameters (``carried`` is the continued runs' only).
        valid = _as_spec(spec)
        if carried is not None:
            self._progress = carried.progress
            self._progress.runs += 1
            self._first_stage = carried.next_stage
        elif isinstance(valid, FleetSpec):
            self._progress = FleetProgress(
                fleet=valid.name,
                target_revision=valid.target_revision,
                budget_allowed=valid.budget_allowed(),
                clusters=[
                    ClusterProgress(cluster=name, stage=stage.name, group=group.name)
                    for stage in valid.layout()
                    for group in stage.groups
                    for name in group.clusters
                ],
            )
            self._first_stage = 0
        else:
            self._progress = FleetProgress(fleet="", target_revision="", phase="FAILED")
            self._first_stage = 0
        self._lines = {line.cluster: line for line in self._progress.clusters}
        self._paused = carried.paused if carried is not None else False
        self._abort: FleetAbortRequest | None = None
        self._approval_wanted: str | None = None
        self._approved: FleetApproveRequest | None = None
        self._finished = False
        self._attributes = False

    # Operator messages ------------------------------------------------------------

    @workflow.query
    def progress(self) -> FleetProgress:
        """Every cluster's state, the stage, the budget and what the fleet waits for."""
        return self._progress

    @workflow.update
    async def pause(self) -> str:
        """Start no further cluster, and pause the running upgrades before their next step."""
        self._paused = True
        self._set_phase("PAUSED")
        await self._signal_running(IstioCanaryUpgrade.signal_pause, None)
        return "paused: no cluster starts until resume"

    @pause.validator
    def _validate_pause(self) -> None:
        self._validate_running("pause")
        if self._paused:
            raise ValueError("the fleet is already paused; resume it to continue")

    @workflow.update
    async def resume(self) -> str:
        """Undo ``pause``: the running upgrades go on and new clusters start."""
        self._paused = False
        self._set_phase("RUNNING")
        await self._signal_running(IstioCanaryUpgrade.signal_resume, None)
        return "resumed"

    @resume.validator
    def _validate_resume(self) -> None:
        if not self._paused:
            raise ValueError("the fleet is not paused; nothing to resume")

    @workflow.update
    def approve(self, request: FleetApproveRequest) -> str:
        """Let the stage that waits for approval start."""
        stage = self._approval_wanted or ""
        self._approved = request
        return f"approved: stage {stage}"

    @approve.validator
    def _validate_approve(self, request: FleetApproveRequest) -> None:
        if self._approval_wanted is None:
            raise ValueError(
                f"no stage waits for approval (phase {self._progress.phase}); approve a cluster's "
                "own step with `istio-upgrade approve <upgrade-id>`"
            )

    @workflow.update
    async def abort(self, request: FleetAbortRequest) -> str:
        """Start no further cluster and roll back every running upgrade."""
        self._abort = request
        self._progress.aborted_by = request.requested_by or "an operator"
        self._set_phase("ABORTING")
        running = await self._signal_running(IstioCanaryUpgrade.signal_abort, self._child_abort())
        return f"aborting: {running} running upgrade(s) roll back, no further cluster starts"

    @abort.validator
    def _validate_abort(self, request: FleetAbortRequest) -> None:
        self._validate_running("abort")

    def _child_abort(self) -> AbortRequest:
        request = self._abort
        reason = request.reason if request else "aborted"
        return AbortRequest(
            reason=f"fleet {self._progress.fleet} aborted: {reason}",
            requested_by=request.requested_by if request else "",
        )

    def _validate_running(self, what: str) -> None:
        if self._finished:
            raise ValueError(f"the fleet has finished; nothing to {what}")
        if self._abort is not None:
            raise ValueError(f"the fleet is aborting ({self._abort.reason}); nothing to {what}")

    async def _signal_running(self, signal: Any, arg: Any) -> int:
        lines = [ln for ln in self._progress.clusters if ln.state in {"RUNNING", "FOLLOWING"}]
        for line in lines:
            handle = workflow.get_external_workflow_handle(line.upgrade_id)
            try:
                if arg is None:
                    await handle.signal(signal)
                else:
                    await handle.signal(signal, arg)
            except Exception as error:
                # The upgrade ended meanwhile: nothing to steer.
                workflow.logger.info("signal to %s not delivered: %s", line.upgrade_id, error)
        return len(lines)

    # Main -------------------------------------------------------------------------

    @workflow.run
    async def run(
        self, spec: FleetSpec | dict[str, Any], carried: FleetCarryover | None = None
    ) -> FleetResult:
        """Roll ``spec.template``'s revision over ``spec.clusters``.

        Args:
            spec: The fleet.
            carried: Set only by the rollout itself when it continues as new between stages.

        Returns:
            The result when every cluster succeeded.

        Raises:
            ApplicationError: Non-retryable, when the budget stopped the fleet, it was
                aborted, or clusters failed within the budget.
        """
        valid = _as_spec(spec)
        if not isinstance(valid, FleetSpec):
            self._finished = True
            raise ApplicationError(
                f"invalid FleetSpec: {valid}", type="InvalidSpec", non_retryable=True
            )
        spec = valid
        info = workflow.info()
        # Attributes are kept current only when the starter set them (the namespace has them).
        self._attributes = info.typed_search_attributes.get(FLEET) is not None
        layout = spec.layout()
        stages_this_run = 0
        self._render()
        for index in range(self._first_stage, len(layout)):
            stage = layout[index]
            if self._stopped():
                break
            if stages_this_run and self._should_continue(spec, stages_this_run):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._stopped():
                    # An abort accepted meanwhile is acted on here, never lost with the run.
                    workflow.continue_as_new(
                        args=[
                            spec,
                            FleetCarryover(
                                progress=self._progress, next_stage=index, paused=self._paused
                            ),
                        ],
                        initial_versioning_behavior=next_run_behavior(),
                    )
                break
            self._progress.stage = stage.name
            self._progress.stage_index = index
            if stage.approval:
                await self._wait_approval(stage)
                if self._stopped():
                    break
            await asyncio.gather(*(self._group(spec, stage, g) for g in stage.groups))
            stages_this_run += 1  # noqa: SIM113 (stages of this run, not of the loop)
            if stage.soak_seconds and index + 1 < len(layout) and not self._stopped():
                self._set_phase("SOAKING", f"stage {stage.name} bakes {stage.soak_seconds:g}s")
                await self._wait_or_abort(timedelta(seconds=stage.soak_seconds))
                self._set_phase("PAUSED" if self._paused else "RUNNING", "")
        return self._finish(spec)

    def _should_continue(self, spec: FleetSpec, stages_this_run: int) -> bool:
        info = workflow.info()
        if spec.max_stages_per_run and stages_this_run >= spec.max_stages_per_run:
            return True
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY_EVENTS
            or newer_version_current()
        )

    def _stopped(self) -> bool:
        return self._abort is not None or self._progress.budget_exceeded

    async def _wait_or_abort(self, duration: timedelta) -> None:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._abort is not None, timeout=duration)

    async def _wait_approval(self, stage: StageLayout) -> None:
        self._approval_wanted = stage.name
        self._approved = None
        self._set_phase("WAITING_APPROVAL", f"approval of stage {stage.name}")
        await workflow.wait_condition(lambda: self._approved is not None or self._stopped())
        self._approval_wanted = None
        self._set_phase("PAUSED" if self._paused else "RUNNING", "")

    async def _group(self, spec: FleetSpec, stage: StageLayout, group: GroupLayout) -> None:
        queue = [c for c in group.clusters if self._lines[c].state not in ENDED_STATES]

        async def lane() -> None:
            while queue:
                await workflow.wait_condition(lambda: not self._paused or self._stopped())
                if self._stopped():
                    return
                await self._cluster(spec, queue.pop(0))

        await asyncio.gather(*(lane() for _ in range(min(group.max_parallel, len(queue)))))

    async def _cluster(self, spec: FleetSpec, name: str) -> None:
        line = self._lines[name]
        primaries = spec.primaries_of(name)
        if primaries and workflow.patched(MESH_PRIMARIES_FIRST):
            behind = [p for p in primaries if self._lines[p].state != "SUCCEEDED"]
            if behind:
                # Its proxies would run ahead of the control plane serving them.
                self._set_line(
                    line,
                    "SKIPPED",
                    f"primary {', '.join(behind)} did not upgrade "
                    f"({', '.join(self._lines[p].state for p in behind)})",
                )
                return
        if not await self._window(spec, line):
            return
        child = spec.cluster_spec(name)
        line.upgrade_id = workflow_id_for(child)
        try:
            handle = await workflow.start_child_workflow(
                IstioCanaryUpgrade.run,
                child,
                id=line.upgrade_id,
                task_queue=workflow.info().task_queue,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                # A succeeded upgrade of this revision is followed (its result), not repeated.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=self._child_attributes(child.cluster.name),
                static_summary=f"Istio upgrade of {name} to {child.target_revision} "
                f"(fleet {spec.name}, stage {line.stage})",
            )
        except WorkflowAlreadyStartedError:
            await self._follow(line)
            return
        self._set_line(line, "RUNNING", "")
        if self._abort is not None:
            # Aborted while the start was in flight: the abort's signals missed this one.
            await self._signal_running(IstioCanaryUpgrade.signal_abort, self._child_abort())
        try:
            result = await handle
        except ChildWorkflowError as error:
            outcome, note = _outcome_of_child_failure(error)
            line.budget_spent = _budget_of_child_failure(error)
            self._set_line(line, outcome, note)
        else:
            if result.budget_spent is not None:
                line.budget_spent = dict(result.budget_spent.total)
            self._set_line(line, "SUCCEEDED", "")

    async def _follow(self, line: ClusterProgress) -> None:
        self._set_line(line, "FOLLOWING", "already running: followed, not started again")
        if self._abort is not None:
            await self._signal_running(IstioCanaryUpgrade.signal_abort, self._child_abort())
        result = await workflow.execute_activity(
            follow_upgrade,
            FollowInput(upgrade_id=line.upgrade_id),
            start_to_close_timeout=FOLLOW_TIMEOUT,
            heartbeat_timeout=FOLLOW_HEARTBEAT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            summary=f"follow {line.upgrade_id}",
        )
        self._set_line(line, result.outcome, result.note or "followed")

    async def _window(self, spec: FleetSpec, line: ClusterProgress) -> bool:
        """Wait for a maintenance window; False when the fleet stopped meanwhile."""
        while True:
            if self._stopped():
                self._set_line(line, "SKIPPED", self._skip_reason())
                return False
            now = workflow.now()
            opens = window_opens_at(spec.windows, now)
            if opens is None:
                self._set_line(line, "SKIPPED", "no maintenance window opens any more")
                return False
            if opens <= now:
                line.opens_at = None
                return True
            line.opens_at = opens
            self._set_line(line, "WAITING_WINDOW", f"waiting for window, opens at {opens}")
            self._progress.waiting = f"waiting for window, opens at {opens.isoformat()}"
            self._render()
            await self._wait_or_abort(opens - now)
            self._progress.waiting = ""

    def _skip_reason(self) -> str:
        if self._abort is not None:
            return f"fleet aborted: {self._abort.reason}"
        return "failure budget exceeded: not started"

    def _set_line(self, line: ClusterProgress, state: Any, note: str) -> None:
        line.state = state
        line.set_note(note)
        if state in FAILED_STATES:
            self._progress.failures = sum(
                1 for ln in self._progress.clusters if ln.state in FAILED_STATES
            )
            if self._progress.failures > self._progress.budget_allowed:
                self._progress.budget_exceeded = True
        self._render()

    def _set_phase(self, phase: FleetPhase, waiting: str | None = None) -> None:
        self._progress.phase = phase
        if waiting is not None:
            self._progress.waiting = waiting
        if self._attributes:
            workflow.upsert_search_attributes([PHASE.value_set(phase)])
        self._render()

    def _render(self) -> None:
        workflow.set_current_details(fleet_markdown(self._progress, workflow.info().namespace))

    def _child_attributes(self, cluster: str) -> TypedSearchAttributes | None:
        if not self._attributes:
            return None
        return TypedSearchAttributes(
            [
                SearchAttributePair(CLUSTER, cluster),
                SearchAttributePair(TARGET_REVISION, self._progress.target_revision),
                SearchAttributePair(PHASE, "PENDING"),
                SearchAttributePair(FLEET, self._progress.fleet),
            ]
        )

    def _finish(self, spec: FleetSpec) -> FleetResult:
        self._finished = True
        progress = self._progress
        for line in progress.clusters:
            if line.state not in ENDED_STATES:
                self._set_line(line, "SKIPPED", self._skip_reason())
        counts = progress.counts()
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        fleet_id = workflow.info().workflow_id
        if self._abort is not None:
            outcome, kind = "ABORTED", "Aborted"
            summary = f"aborted by {progress.aborted_by}: {self._abort.reason}; {summary}"
        elif progress.budget_exceeded:
            outcome, kind = "FAILED", "FailureBudgetExceeded"
            summary = (
                f"{progress.failures} cluster(s) failed, more than the budget of "
                f"{progress.budget_allowed}: stopped at stage {progress.stage}; {summary}"
            )
        elif progress.failures:
            outcome, kind = "FAILED", "ClustersFailed"
            summary = f"{progress.failures} cluster(s) failed within the budget; {summary}"
        else:
            outcome, kind = "SUCCEEDED", ""
            summary = f"{len(progress.clusters)} cluster(s) on {progress.target_revision}"
        progress.phase = outcome  # type: ignore[assignment]
        progress.waiting = ""
        if self._attributes:
            workflow.upsert_search_attributes(
                [PHASE.value_set(outcome), OUTCOME.value_set(outcome)]
            )
        self._render()
        result = FleetResult(
            outcome=outcome,
            summary=summary,
            fleet_id=fleet_id,
            target_revision=progress.target_revision,
            clusters=progress.clusters,
        )
        if kind:
            raise ApplicationError(summary, result, type=kind, non_retryable=True)
        return result
