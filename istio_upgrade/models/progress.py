"""What the ``progress`` query returns, what the upgrade ends with, and operator messages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from istio_upgrade.models.gate import BudgetSpent, GateResult, budget_markdown
from istio_upgrade.models.notifications import NotificationRecord
from istio_upgrade.models.plan import Plan, PrecheckReport


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class Phase(StrEnum):
    """Where the upgrade is."""

    VALIDATING = "VALIDATING"
    DISCOVERING = "DISCOVERING"
    PLANNING = "PLANNING"
    INSTALLING = "INSTALLING"
    WAITING_REVISION = "WAITING_REVISION"
    MIGRATING = "MIGRATING"
    SOAKING = "SOAKING"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    PROMOTING = "PROMOTING"
    GRACE = "GRACE"
    CLEANING_UP = "CLEANING_UP"
    ROLLING_BACK = "ROLLING_BACK"
    SUCCEEDED = "SUCCEEDED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"
    DRY_RUN = "DRY_RUN"


BatchStatus = Literal[
    "pending",
    "relabeling",
    "restarting",
    "rolling_out",
    "verifying",
    "warming_up",
    "soaking",
    "passed",
    "failed",
    "rolling_back",
    "rolled_back",
]


class Straggler(_Model):
    """A pod that is not (yet) on the expected revision."""

    namespace: str
    pod: str
    revision: str | None = None
    """Revision that injected it; None = no sidecar."""
    reason: str


class Diagnostic(_Model):
    """Why a straggler is stuck: its recent Events and the tail of its proxy log."""

    namespace: str
    pod: str
    events: list[str] = Field(default_factory=list)
    proxy_log: str = ""


class BatchProgress(_Model):
    """State of one batch."""

    index: int
    namespaces: list[str]
    status: BatchStatus = "pending"
    namespace_status: dict[str, str] = Field(default_factory=dict)
    started_at: datetime | None = None
    ready_at: datetime | None = None
    finished_at: datetime | None = None
    restarted: list[str] = Field(default_factory=list)
    """``namespace/Kind/name`` of the workloads restarted."""
    gate_results: list[GateResult] = Field(default_factory=list)
    """The latest evaluations (at most ``KEPT_EVALUATIONS``; the decisive one once the batch
    has ended, its per-namespace detail reduced to the namespaces that did not pass)."""
    soak_extended_seconds: float = 0.0
    """Extra soak operators added with ``extend_soak``."""
    budget_spent: dict[str, float] = Field(default_factory=dict)
    """SLO name → fraction of the period's error budget this batch spent since it went Ready
    (until its last gate evaluation)."""
    restarted_count: int = 0
    """Workloads restarted, kept once ``restarted`` is emptied at the batch's end."""
    evaluations: int = 0
    """Gate evaluations of the batch, kept ones or not."""

    def bound(self) -> None:
        """Keep the batch's record within a bound of its own size, whatever the mesh.

        The progress is the ``progress`` query's result, the Web UI's details and part of the
        continue-as-new input: every batch holding every evaluation, every restarted workload
        and every namespace's verdict made it megabytes at 2,000 namespaces. The current batch
        keeps its last evaluations in full; an ended batch keeps counts and what went wrong.
        """
        if self.gate_results:
            self.evaluations = max(self.evaluations, self.gate_results[-1].sequence)
        del self.gate_results[:-KEPT_EVALUATIONS]
        if self.status not in ENDED:
            return
        self.restarted_count = max(self.restarted_count, len(self.restarted))
        self.restarted = []
        del self.gate_results[:-1]
        for result in self.gate_results:
            result.namespaces = {
                ns: gate for ns, gate in result.namespaces.items() if gate.verdict != "PASS"
            }
        self.namespace_status = {
            ns: status
            for ns, status in self.namespace_status.items()
            if status not in {"PASS", self.status}
        }


KEPT_EVALUATIONS = 3
"""Gate evaluations the current batch keeps in its progress (the decision needs only the
previous ones, which the soak holds itself)."""
ENDED: frozenset[str] = frozenset({"passed", "rolled_back"})
MAX_MESSAGES = 100
"""Warnings and errors the progress keeps, half the first ones (the precheck's), half the
latest; the ones between are counted: many are per namespace or per pod, and a mesh has
thousands."""


def _cap(messages: list[str]) -> int:
    """Drop the middle of ``messages`` beyond ``MAX_MESSAGES``; how many were dropped."""
    extra = len(messages) - MAX_MESSAGES
    if extra <= 0:
        return 0
    half = MAX_MESSAGES // 2
    del messages[half : half + extra]
    return extra


class ApprovalRecord(_Model):
    """An operator's approval of a waiting step."""

    step: str
    approver: str
    comment: str = ""
    at: datetime


class Progress(_Model):
    """The live state of an upgrade (``progress`` query)."""

    upgrade_id: str = ""
    cluster: str = ""
    source_revision: str | None = None
    target_revision: str = ""
    phase: Phase = Phase.VALIDATING
    paused: bool = False
    current_batch: int | None = None
    batches: list[BatchProgress] = Field(default_factory=list)
    waiting_for: str | None = None
    """What the upgrade waits for (an approval, a resume), if anything."""
    stragglers: list[Straggler] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    tags_moved: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    updated_at: datetime | None = None
    runs: int = 1
    """Workflow runs so far: a long upgrade continues as new between batches (same id)."""
    budget_spent: BudgetSpent | None = None
    """Error budget spent per SLO, per batch and in total, as fractions of the period's."""
    omitted_warnings: int = 0
    """Warnings beyond ``MAX_MESSAGES``, counted, not kept."""
    omitted_errors: int = 0
    """Errors beyond ``MAX_MESSAGES``, counted, not kept."""
    notifications: list[NotificationRecord] = Field(default_factory=list)
    """Notifications sent to ``spec.notifications``' receivers, the latest ``MAX_MESSAGES``."""
    notifications_sent: int = 0
    """Notifications sent so far, kept or not: the sequence of each one's idempotency key."""

    def bound(self) -> None:
        """Keep the progress within a bound that grows with the namespace names only.

        Per namespace, what stays is its name in its batch (and in ``plan``); everything else
        is per batch, bounded by the batch's size, or capped: see ``BatchProgress.bound``.
        """
        for batch in self.batches:
            batch.bound()
        self.omitted_warnings += _cap(self.warnings)
        self.omitted_errors += _cap(self.errors)
        del self.stragglers[MAX_MESSAGES:]
        del self.diagnostics[MAX_MESSAGES:]
        del self.notifications[:-MAX_MESSAGES]


Outcome = Literal["SUCCEEDED", "ROLLED_BACK", "FAILED", "DRY_RUN"]


class UpgradeResult(_Model):
    """How an upgrade ended.

    A successful upgrade and a dry run return it; a rolled-back or failed upgrade fails the
    workflow with an ``ApplicationError`` whose first detail is this result.
    """

    outcome: Outcome
    summary: str
    upgrade_id: str
    source_revision: str | None = None
    target_revision: str
    migrated_namespaces: list[str] = Field(default_factory=list)
    tags_moved: list[str] = Field(default_factory=list)
    old_revision_removed: bool = False
    failed_gate: GateResult | None = None
    failed_batch: int | None = None
    plan: Plan | None = None
    precheck: PrecheckReport | None = None
    warnings: list[str] = Field(default_factory=list)
    budget_spent: BudgetSpent | None = None
    """Error budget the upgrade spent per SLO, per batch and in total (fractions of the
    period's budget), measured over the migrated namespaces since each batch went Ready."""


class ApproveRequest(BaseModel):
    """Argument of the ``approve`` update/signal."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    approver: str = Field(min_length=1)
    """Who approves."""
    comment: str = ""
    """Why."""


class ExtendSoakRequest(BaseModel):
    """Argument of the ``extend_soak`` update/signal: watch the current batch longer.

    The batch must then hold PASS for its soak plus the extension, and an INCONCLUSIVE gate
    gets that much longer before its ``on_inconclusive`` policy applies; a batch waiting for
    approval after an INCONCLUSIVE gate goes back to soaking for that long, counted from the
    extension.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    seconds: float = Field(gt=0, le=7 * 24 * 3600)
    """How much longer to soak, in seconds (at most a week)."""
    requested_by: str = ""
    """Who asked."""
    reason: str = ""
    """Why."""


class AbortRequest(BaseModel):
    """Argument of the ``abort`` update/signal: stop and roll back."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    reason: str = Field(min_length=1)
    requested_by: str = ""


SHOWN_NAMES = 5
"""Namespaces the Web UI's details name per batch (the rest are counted)."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def progress_markdown(progress: Progress) -> str:
    """A markdown summary of an upgrade for the Temporal Web UI's current-details pane."""
    lines = [
        f"**{progress.cluster}**: {progress.source_revision or '?'} → {progress.target_revision}"
        f" — phase **{progress.phase.value}**"
        + (" (paused)" if progress.paused else "")
        + (f" — run {progress.runs} (continued as new)" if progress.runs > 1 else ""),
    ]
    if progress.waiting_for:
        lines.append(f"\nWaiting for: {_cell(progress.waiting_for)}")
    if progress.batches:
        lines += ["", "| # | namespaces | status | gate |", "|---|---|---|---|"]
        for batch in progress.batches:
            last = batch.gate_results[-1] if batch.gate_results else None
            gate = (
                f"{last.verdict} #{last.sequence}: {_cell(last.reasons[0] if last.reasons else '')}"
                if last
                else ""
            )
            names = ", ".join(batch.namespaces[:SHOWN_NAMES]) + (
                f" and {len(batch.namespaces) - SHOWN_NAMES} more"
                if len(batch.namespaces) > SHOWN_NAMES
                else ""
            )
            status: str = batch.status
            if batch.soak_extended_seconds:
                status += f" (soak +{batch.soak_extended_seconds:g}s)"
            marker = "▶ " if progress.current_batch == batch.index else ""
            lines.append(f"| {marker}{batch.index} | {_cell(names)} | {status} | {gate} |")
    if budget := budget_markdown(progress.budget_spent):
        lines.append(f"\n{budget}")
    if progress.stragglers:
        shown = ", ".join(f"{s.namespace}/{s.pod}" for s in progress.stragglers[:5])
        lines.append(f"\nStragglers: {shown}")
    if progress.approvals:
        last_approval = progress.approvals[-1]
        comment = f" ({_cell(last_approval.comment)})" if last_approval.comment else ""
        lines.append(
            f"\nApproved: {_cell(last_approval.step)} by {_cell(last_approval.approver)}{comment}"
        )
    failed = [n for n in progress.notifications if n.status == "failed"]
    if failed:
        shown = ", ".join(f"{n.event} to {n.receiver}" for n in failed[-3:])
        lines.append(f"\nNotifications failed: {_cell(shown)}")
    if progress.errors:
        lines.append(f"\nErrors: {_cell('; '.join(progress.errors[-3:]))}")
    return "\n".join(lines)
