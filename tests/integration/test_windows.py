"""Maintenance windows hold an upgrade until they open, and never hold its rollback.

Real Temporal, Prometheus and sandbox. The windows are written relative to the server's
clock (an exclusion starting now, or in ten minutes), and time moves on the time-skipping
test server (``env.sleep``): no test waits for a window in real time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import start_time_skipping
from istio_upgrade.models import UpgradeResult
from istio_upgrade.models.progress import AbortRequest, ApproveRequest
from istio_upgrade.models.windows import MaintenanceWindows
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    istiod_deployments,
    namespace_labels,
    pod_revisions,
    record_history,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow

ZONE = "Europe/Berlin"


def local(at: datetime) -> str:
    """``at`` as a naive local time in ``ZONE``, as exclusions are written (to the minute)."""
    return at.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None, second=0, microsecond=0).isoformat()


def freeze(start: datetime, end: datetime) -> MaintenanceWindows:
    """Open at all times except ``[start, end)`` (minute precision), a "freeze"."""
    return MaintenanceWindows.model_validate(
        {
            "timezone": ZONE,
            "exclusions": [{"start": local(start), "end": local(end), "reason": "freeze"}],
        }
    )


async def test_closed_window_holds_the_install_with_its_opening_and_abort_is_not_held(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    now = datetime.now(UTC)
    windows = freeze(now - timedelta(hours=1), now + timedelta(days=3))
    opens = windows.next_open(now)
    assert opens is not None and opens > now + timedelta(days=2)
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        before = namespace_labels(stack)
        spec = fast_spec(stack.prometheus.url, windows=windows.model_dump(mode="json"))
        handle = await stack.start(spec, suffix=f".closed-{now:%H%M%S}")
        progress = await wait_progress(
            handle,
            lambda p: (p.waiting_for or "").startswith("window ("),
            "the upgrade to wait for its window",
        )
        waiting = progress.waiting_for or ""
        # The opening in the window's timezone and in UTC, and why it is closed.
        assert waiting.startswith("window (install 1-31-0), opens at "), waiting
        assert windows.describe(opens) in waiting, waiting
        assert "(Europe/Berlin) / " in waiting and waiting.count(" UTC") == 1, waiting
        assert "closed for: freeze" in waiting, waiting
        # Nothing was installed or relabelled while it waits.
        assert "istiod-1-31-0" not in istiod_deployments(stack)
        assert namespace_labels(stack) == before
        # An abort ends the wait at once; the rollback does not wait for the window.
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="not this week", requested_by="ops")
        )
        cause = await failure(handle)
        assert cause.type == "Aborted", cause.message
        await record_history(handle, "window-wait-abort-5")
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK", progress.errors
        assert progress.waiting_for is None
        assert namespace_labels(stack) == before
        # The wait is one durable timer, labelled in the Web UI's timeline.
        history = await handle.fetch_history()
        timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
        assert any("maintenance window for install" in str(t.user_metadata) for t in timers)


async def test_open_window_lets_the_upgrade_proceed(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    now = datetime.now(UTC)
    # Weekly windows round the clock, and a freeze next month that does not concern us.
    windows = MaintenanceWindows.model_validate(
        {
            "timezone": ZONE,
            "weekly": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "00:00",
                    "duration_minutes": 24 * 60,
                }
            ],
            "exclusions": [
                {
                    "start": local(now + timedelta(days=30)),
                    "end": local(now + timedelta(days=31)),
                }
            ],
        }
    )
    assert windows.is_open(now)
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        spec = fast_spec(stack.prometheus.url, windows=windows.model_dump(mode="json"))
        handle = await stack.start(spec, suffix=f".open-{now:%H%M%S}")
        result: UpgradeResult = await handle.result()
        await record_history(handle, "window-open-5")
        assert result.outcome == "SUCCEEDED", result.summary
        assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
        # No window timer was ever started.
        history = await handle.fetch_history()
        timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
        assert not [t for t in timers if "maintenance window" in str(t.user_metadata)], timers


async def test_next_batch_waits_for_the_next_window_and_rollback_is_not_held(
    sandbox_factory: Any, prometheus_factory: Any
) -> None:
    env = await start_time_skipping()
    try:
        await _next_batch_waits(env, sandbox_factory, prometheus_factory)
    finally:
        await env.shutdown()


async def _next_batch_waits(
    env: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    now = await env.get_current_time()
    # Open now; closed from ten minutes on for three days.
    windows = freeze(now + timedelta(minutes=10), now + timedelta(days=3))
    async with upgrade_stack(env.client, sandbox_factory, prometheus_factory) as stack:
        spec = fast_spec(
            stack.prometheus.url,
            windows=windows.model_dump(mode="json"),
            approvals={"between_batches": True},
        )
        handle = await stack.start(spec)
        # Batch 0 (the canary) starts inside the window, migrates, soaks and passes.
        await wait_progress(
            handle,
            lambda p: p.waiting_for == "approval: migrate batch 1",
            "batch 0 to pass and batch 1 to wait for its approval",
            seconds=120,
        )
        assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
        # The window closes meanwhile: batch 1, approved, waits for the next one.
        await env.sleep(timedelta(minutes=15))
        await handle.signal(IstioCanaryUpgrade.signal_approve, ApproveRequest(approver="ops"))
        progress = await wait_progress(
            handle,
            lambda p: (p.waiting_for or "").startswith("window (batch 1)"),
            "batch 1 to wait for the next window",
        )
        opens = windows.next_open(await env.get_current_time())
        assert opens is not None
        assert f"opens at {windows.describe(opens)}" in (progress.waiting_for or "")
        assert progress.batches[1].status == "pending"
        later = [ns for b in progress.batches[1:] for ns in b.namespaces]
        assert later and all(
            set(pod_revisions(stack, ns).values()) <= {"1-30-3", None} for ns in later[:3]
        )
        # An abort now rolls batch 0 back at once, the window still closed.
        await handle.signal(
            IstioCanaryUpgrade.signal_abort,
            AbortRequest(reason="change freeze", requested_by="ops"),
        )
        # The rollback runs on real activities: with time skipping off, a rollback held by the
        # window (three days away) would never end here, and a slow machine's idle moments
        # cannot skip the server's clock to some far timer meanwhile.
        with env.auto_time_skipping_disabled():
            cause = await asyncio.wait_for(failure(handle), timeout=600)
        assert cause.type == "Aborted", cause.message
        elapsed = await env.get_current_time() - now
        assert elapsed < timedelta(days=1), f"the rollback waited for the window: {elapsed}"
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK", progress.errors
        assert set(pod_revisions(stack, "frontend").values()) <= {"1-30-3"}
