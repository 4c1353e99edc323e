"""Fleet activities: follow an upgrade the fleet did not start.

A child workflow cannot attach to a running workflow (child starts have no id conflict
policy), so when the upgrade of a cluster is already running — started by hand or by another
fleet — the fleet follows it from outside with the worker's own Temporal client
(``temporalio.activity.client()``): wait for its result here, steer it with signals.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError

from istio_upgrade.models.fleet import FollowInput, FollowResult, Outcome

HEARTBEAT_SECONDS = 5.0
"""Heartbeat period of a follow: the fleet hears of a lost worker within its heartbeat
timeout, and of its own cancellation at the next heartbeat."""


def outcome_of_failure(cause: BaseException | None) -> tuple[Outcome, str]:
    """How a failed upgrade ended, from the cause of its workflow failure.

    The upgrade fails with an ``ApplicationError`` whose first detail is its ``UpgradeResult``
    (outcome ``ROLLED_BACK`` or ``FAILED``); a cancelled one ends CANCELED.
    """
    if isinstance(cause, CancelledError):
        return "CANCELED", "cancelled"
    if isinstance(cause, TerminatedError):
        return "FAILED", "terminated"
    if isinstance(cause, ApplicationError):
        outcome: Any = None
        if cause.details:
            detail = cause.details[0]
            outcome = detail.get("outcome") if isinstance(detail, dict) else None
            outcome = outcome or getattr(detail, "outcome", None)
        if outcome not in {"ROLLED_BACK", "FAILED"}:
            outcome = "FAILED"
        return outcome, f"{cause.type or 'failed'}: {cause.message}"
    return "FAILED", str(cause) if cause is not None else "failed"


@activity.defn(name="follow_upgrade")
async def follow_upgrade(request: FollowInput) -> FollowResult:
    """Wait for the upgrade ``request.upgrade_id`` to end (across its continued runs).

    Heartbeats every few seconds; a retried attempt simply waits again.
    """
    client = activity.client()
    handle = client.get_workflow_handle(request.upgrade_id)
    waiting = asyncio.ensure_future(handle.result())
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=HEARTBEAT_SECONDS)
            if done:
                break
            activity.heartbeat()
        try:
            waiting.result()
        except WorkflowFailureError as error:
            outcome, note = outcome_of_failure(error.cause)
            return FollowResult(outcome=outcome, note=note)
        return FollowResult(outcome="SUCCEEDED", note="followed an upgrade already running")
    finally:
        if not waiting.done():
            waiting.cancel()
