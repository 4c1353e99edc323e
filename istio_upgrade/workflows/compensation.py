"""The compensation stack: how an upgrade undoes what it did, in reverse, to the end.

Every write of an upgrade is preceded by pushing its undo, so a failure, an abort or a
cancellation at any point rolls back exactly what was done. Unwinding never stops halfway: an
undo that fails for a reason that may pass (the API server down, throttling) is retried for up
to :data:`UNDO_PATIENCE`, saying so in the progress; one that still fails is recorded and the
rest still run. Nothing cancels the unwinding (see ``phases/rollback.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError, RetryState

UNDO_RETRIES = "undo-retries"
"""Patch: undo steps are retried for a long time; upgrades recorded before gave up at once."""

UNDO_PATIENCE = timedelta(minutes=30)
"""How long a failing undo step is retried before the rollback is declared incomplete: a
rollback should outlast an API server restart or a control-plane upgrade of the cluster."""

UNDO_FIRST_DELAY_S = 5.0
UNDO_MAX_DELAY_S = 60.0

Retrying = Callable[[str | None], None]
"""Shows (a message) or clears (None) a step being retried, in the progress and Web UI."""


@dataclass(frozen=True)
class Compensation:
    """One undo step."""

    label: str
    """What it undoes, as recorded in ``Progress.errors`` when it fails or is skipped."""

    undo: Callable[[], Awaitable[None]]
    """Runs the undoing activities."""

    needs_complete_rollback: bool = False
    """Skipped once the rollback is incomplete: removing the new revision's control plane
    while pods still run its proxies would leave them without istiod (and without the
    injection webhook their restarts need)."""


class Compensations:
    """The undo steps of the writes done so far, last pushed first undone."""

    def __init__(self) -> None:
        self._stack: list[Compensation] = []
        self.incomplete = False
        """Whether some undo failed, or left namespaces off the old revision."""

    def push(
        self,
        label: str,
        undo: Callable[[], Awaitable[None]],
        *,
        needs_complete_rollback: bool = False,
    ) -> None:
        """Record the undo of the write about to be made."""
        self._stack.append(Compensation(label, undo, needs_complete_rollback))

    def clear(self) -> None:
        """Forget every undo: past this point the upgrade no longer rolls back."""
        self._stack.clear()

    def mark_incomplete(self) -> None:
        """An undo could not restore everything; say so, and keep what depends on it."""
        self.incomplete = True

    def __len__(self) -> int:
        return len(self._stack)

    async def unwind(self, errors: list[str], retrying: Retrying | None = None) -> None:
        """Run every undo in reverse; a failing one is recorded in ``errors``, the rest run.

        With ``retrying``, an undo failing for a reason that may pass is run again (each undo
        is idempotent) until it succeeds or :data:`UNDO_PATIENCE` has passed.
        """
        while self._stack:
            step = self._stack.pop()
            if step.needs_complete_rollback and self.incomplete:
                errors.append(
                    f"skipped {step.label!r}: some namespaces did not return to the old revision"
                )
                continue
            error = await run_patiently(step.label, step.undo, retrying)
            if error is not None:
                self.incomplete = True
                errors.append(f"rollback step {step.label!r} failed: {describe(error)}")


def describe(error: FailureError) -> str:
    """An error with its cause, as one line."""
    cause = f": {error.cause}" if error.cause else ""
    return f"{error}{cause}"


def _may_pass(error: FailureError) -> bool:
    # Only an activity that ran out of attempts or time: a non-retryable error (Forbidden, an
    # invalid object) fails the same way every time.
    return isinstance(error, ActivityError) and error.retry_state in (
        RetryState.MAXIMUM_ATTEMPTS_REACHED,
        RetryState.TIMEOUT,
    )


async def run_patiently(
    label: str, step: Callable[[], Awaitable[None]], retrying: Retrying | None
) -> FailureError | None:
    """Run ``step``; retry it while it fails for a reason that may pass, for a bounded time.

    Returns:
        None once it succeeded, else the last error.
    """
    deadline = None
    delay = UNDO_FIRST_DELAY_S
    while True:
        try:
            await step()
        except FailureError as error:
            if retrying is None or not _may_pass(error) or not workflow.patched(UNDO_RETRIES):
                return error
            now = workflow.now()
            deadline = deadline or now + UNDO_PATIENCE
            if now >= deadline:
                retrying(None)
                return error
            retrying(
                f"rollback retrying: {label}: {describe(error)} (again in {delay:g}s; gives up "
                f"at {deadline:%Y-%m-%d %H:%M:%S} UTC)"
            )
            await workflow.sleep(delay)
            delay = min(delay * 2, UNDO_MAX_DELAY_S)
            continue
        if deadline is not None and retrying is not None:
            retrying(None)
        return None
