"""The compensation stack: how an upgrade undoes what it did, in reverse, to the end.

Every write of an upgrade is preceded by pushing its undo, so a failure, an abort or a
cancellation at any point rolls back exactly what was done. Unwinding never stops halfway: a
failing undo is recorded and the rest still run; the caller shields the unwinding from
cancellation (see ``phases/rollback.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.exceptions import FailureError


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

    async def unwind(self, errors: list[str]) -> None:
        """Run every undo in reverse; a failing one is recorded in ``errors``, the rest run."""
        while self._stack:
            step = self._stack.pop()
            if step.needs_complete_rollback and self.incomplete:
                errors.append(
                    f"skipped {step.label!r}: some namespaces did not return to the old revision"
                )
                continue
            try:
                await step.undo()
            except FailureError as error:
                self.incomplete = True
                cause = f": {error.cause}" if error.cause else ""
                errors.append(f"rollback step {step.label!r} failed: {error}{cause}")
