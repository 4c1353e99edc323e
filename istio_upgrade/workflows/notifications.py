"""Tell people when they are needed: fire the ``notify`` activity, never wait on it for long.

The upgrade fires a notification (``Notifications.fire``) where a person is needed — it waits
for an approval, its gate refused a batch, a rollback ended, the cluster lock stays taken — and
when it succeeds. Each receiver of ``spec.notifications`` subscribed to the event gets one
``notify`` activity, started in a task of its own: the upgrade goes on at once (a gate failure
rolls back while the notification is in flight, an approval wait starts while Slack is being
told about it). A notification that fails after its bounded retries leaves a warning and a
``failed`` record in the progress, nothing more: it never fails, blocks or delays a step.

Every task is awaited before the run ends (``settle``: before the workflow returns, fails or
continues as new), so no activity is left behind by a closed run; the wait is bounded by the
activity's schedule-to-close timeout. Deterministic code only (patch ``notifications``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import notify
    from istio_upgrade.models.notifications import (
        MAX_REASONS,
        MAX_TEXT,
        NotificationEvent,
        NotificationMessage,
        NotificationRecord,
        NotificationSpec,
        NotifyInput,
    )
    from istio_upgrade.models.progress import Progress
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.identity import upgrade_identity
    from istio_upgrade.workflows.steps import activity_task_queue

NOTIFICATIONS = "notifications"
"""Patch: the upgrade notifies ``spec.notifications`` (upgrades without receivers never reach
it, so their histories carry no marker)."""

START_TO_CLOSE = timedelta(seconds=15)
"""One attempt: the POST's own 10 s timeout, and a margin."""
SCHEDULE_TO_CLOSE = timedelta(seconds=60)
"""All attempts together: a run ends at most this long after its last notification fired."""
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=4,
    non_retryable_error_types=["NotificationMisconfigured", "NotificationRejected"],
)
"""A receiver down for a few seconds still gets the message; one down for longer is reported
(not retried for hours: by then the message is stale and a person reads the progress)."""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class Notifications:
    """The receivers of one run and the notifications in flight."""

    def __init__(self, progress: Progress, refresh: Callable[[], None]) -> None:
        self._progress = progress
        self._refresh = refresh
        self._receivers: list[NotificationSpec] = []
        self._spec: UpgradeSpec | None = None
        self._pending: list[asyncio.Task[None]] = []

    def configure(self, spec: UpgradeSpec) -> None:
        """Notify ``spec.notifications`` from now on."""
        self._spec = spec
        self._receivers = list(spec.notifications)

    def fire(
        self,
        event: NotificationEvent,
        summary: str,
        *,
        next_steps: str,
        whole_upgrade: bool = False,
        verdict: str | None = None,
        reasons: Sequence[str] = (),
    ) -> None:
        """Send ``event`` to every receiver subscribed to it, without waiting.

        Args:
            event: What happened.
            summary: One or two sentences saying what happened.
            next_steps: What a person should do now.
            whole_upgrade: The event concerns no batch (success); else the current batch.
            verdict: The gate's verdict, when a gate decided.
            reasons: The verdict's or the failure's reasons.
        """
        receivers = [r for r in self._receivers if event in r.events]
        if not receivers or self._spec is None or not workflow.patched(NOTIFICATIONS):
            return
        p = self._progress
        concerned = None if whole_upgrade else p.current_batch
        p.notifications_sent += 1
        key = f"{upgrade_identity()}/{event}/batch-{concerned}/{p.notifications_sent}"
        message = NotificationMessage(
            event=event,
            idempotency_key=key,
            upgrade_id=workflow.info().workflow_id,
            cluster=self._spec.cluster.name,
            from_revision=p.source_revision,
            to_revision=p.target_revision or self._spec.target_revision,
            batch=concerned,
            phase=p.phase.value,
            summary=_clip(summary),
            verdict=verdict,
            reasons=[_clip(r) for r in reasons[:MAX_REASONS]],
            omitted_reasons=max(0, len(reasons) - MAX_REASONS),
            next_steps=_clip(next_steps),
            occurred_at=workflow.now(),
        )
        for receiver in receivers:
            record = NotificationRecord(
                event=event, receiver=receiver.name, batch=concerned, key=key
            )
            p.notifications.append(record)
            request = NotifyInput(receiver=receiver, message=message)
            self._pending.append(asyncio.ensure_future(self._deliver(request, record)))
        self._refresh()

    async def _deliver(self, request: NotifyInput, record: NotificationRecord) -> None:
        try:
            result = await workflow.start_activity(
                notify,
                request,
                start_to_close_timeout=START_TO_CLOSE,
                schedule_to_close_timeout=SCHEDULE_TO_CLOSE,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {request.receiver.name}: {request.message.event}",
                task_queue=activity_task_queue((request,)),
            )
        except ActivityError as error:
            cause = error.cause
            why = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
            record.status, record.detail = "failed", _clip(why)
            self._progress.warnings.append(
                f"notification {record.event} to {record.receiver} failed ({record.detail}); "
                "the upgrade goes on without it"
            )
        else:
            record.status = "delivered"
            record.detail = f"HTTP {result.status_code} (attempt {result.attempt})"
        self._refresh()

    async def settle(self) -> None:
        """Wait for the notifications in flight (each ends within ``SCHEDULE_TO_CLOSE``)."""
        while self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)
