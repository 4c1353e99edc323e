"""How an upgrade workflow ended, and the exit code that says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.models import UpgradeResult

_EXIT_BY_OUTCOME = {
    "SUCCEEDED": ExitCode.OK,
    "DRY_RUN": ExitCode.OK,
    "ROLLED_BACK": ExitCode.ROLLED_BACK,
    "FAILED": ExitCode.FAILED,
}


@dataclass
class Ending:
    """The end of one upgrade run."""

    outcome: str
    """``SUCCEEDED``, ``ROLLED_BACK``, ``FAILED``, ``DRY_RUN``, ``CANCELLED`` or ``TERMINATED``."""
    result: UpgradeResult | None
    """The workflow's result (also carried by a rolled-back or failed run), when it has one."""
    message: str
    """One sentence for the terminal."""

    @property
    def exit_code(self) -> ExitCode:
        if self.outcome in {"CANCELLED", "TERMINATED"}:
            return ExitCode.CANCELLED
        return _EXIT_BY_OUTCOME.get(self.outcome, ExitCode.FAILED)


def _result_from_details(details: Any) -> UpgradeResult | None:
    if not details:
        return None
    first = details[0]
    if isinstance(first, UpgradeResult):
        return first
    try:
        return UpgradeResult.model_validate(first)
    except ValueError:
        return None


async def wait_for_end(handle: WorkflowHandle[Any, Any]) -> Ending:
    """Wait for the workflow behind ``handle`` to close and explain how it ended.

    A rolled-back or failed upgrade fails its workflow with an ``ApplicationError`` whose first
    detail is the :class:`~istio_upgrade.models.UpgradeResult`; that result is recovered here.
    """
    try:
        raw = await handle.result()
    except WorkflowFailureError as error:
        cause = error.cause
        if isinstance(cause, CancelledError):
            return Ending("CANCELLED", None, "the workflow was cancelled")
        if isinstance(cause, TerminatedError):
            return Ending("TERMINATED", None, f"the workflow was terminated: {cause.message}")
        if isinstance(cause, ApplicationError):
            upgrade = _result_from_details(cause.details)
            if upgrade is not None:
                return Ending(upgrade.outcome, upgrade, upgrade.summary)
            return Ending("FAILED", None, f"{cause.type or 'error'}: {cause.message}")
        message = getattr(cause, "message", None) or str(cause or error)
        return Ending("FAILED", None, message)
    result = raw if isinstance(raw, UpgradeResult) else UpgradeResult.model_validate(raw)
    return Ending(result.outcome, result, result.summary)


async def closed_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    """The run's status, None while it is still running."""
    description = await handle.describe()
    status = description.status
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return None
    return status
