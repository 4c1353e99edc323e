"""Exit codes of the ``istio-upgrade`` command, stable for scripts and CI pipelines."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a non-zero exit means; ``watch`` and ``start --wait`` map the upgrade's outcome."""

    OK = 0
    """The command did what it was asked; for ``watch``/``--wait``: the upgrade succeeded."""
    ERROR = 1
    """Unexpected error (bug, server error); the message says what happened."""
    USAGE = 2
    """Bad input: unknown option, unreadable or invalid spec (one ``field: message`` line each)."""
    ROLLED_BACK = 3
    """The upgrade ended rolled back (gate failure, abort, or error with a clean rollback)."""
    FAILED = 4
    """The upgrade failed and the cluster may need attention (rollback incomplete or impossible)."""
    CANCELLED = 5
    """The workflow was cancelled or terminated from outside."""
    UNAVAILABLE = 6
    """Temporal could not be reached, or no upgrade has that id."""
    REJECTED = 7
    """The request was refused: ``approve`` when nothing waits, ``start`` on a busy cluster …"""
    WAITING = 8
    """``status``: the upgrade waits for an operator (approval or resume)."""
