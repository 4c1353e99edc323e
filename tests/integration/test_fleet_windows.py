"""A closed maintenance window holds the fleet (showing when it opens); an open one lets it
go on. Against the time-skipping test server: the window's wait is skipped, never slept."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.client import abort_fleet
from istio_upgrade.models.fleet import FleetSpec
from istio_upgrade.worker import build_worker
from istio_upgrade.workflows.fleet import FleetRollout
from tests.integration.fleet_stack import states

TEMPLATE = {"target": {"version": "1.31.0"}, "gate": {"prometheus_url": "http://127.0.0.1:1"}}


def one_cluster(windows: dict[str, Any] | None) -> FleetSpec:
    name = f"c{uuid.uuid4().hex[:6]}"
    return FleetSpec.model_validate(
        {
            "name": f"w{uuid.uuid4().hex[:6]}",
            "clusters": [{"name": name, "context": "absent"}],
            "stages": [{"name": "only", "clusters": [name]}],
            "template": TEMPLATE,
            "windows": windows,
        }
    )


def frozen_until(end: datetime) -> dict[str, Any]:
    """Open at all times except from yesterday to ``end`` (local UTC, naive)."""
    start = (end - timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    return {
        "timezone": "UTC",
        "weekly": [],
        "exclusions": [
            {"start": start.isoformat(), "end": end.replace(tzinfo=None).isoformat(),
             "reason": "freeze"},
        ],
    }  # fmt: skip


async def test_closed_window_holds_the_fleet_and_says_when_it_opens(
    temporal_ts: WorkflowEnvironment,
) -> None:
    queue = f"fleet-windows-{uuid.uuid4().hex[:6]}"
    # The server's clock, not ours: earlier tests on the shared time-skipping server may have
    # skipped it days ahead.
    now = await temporal_ts.get_current_time()
    opens = (now + timedelta(days=2)).replace(microsecond=0, second=0)
    spec = one_cluster(frozen_until(opens))
    async with build_worker(temporal_ts.client, task_queue=queue, kubeconfig="/nonexistent"):
        handle = await temporal_ts.client.start_workflow(
            FleetRollout.run, spec, id=f"istio-fleet.{spec.name}", task_queue=queue
        )
        with temporal_ts.auto_time_skipping_disabled():
            progress = None
            for _ in range(600):
                progress = await handle.query(FleetRollout.progress)
                if states(progress)[spec.clusters[0].name] == "WAITING_WINDOW":
                    break
                await asyncio.sleep(0.05)
            assert progress is not None
            [line] = progress.clusters
            assert line.state == "WAITING_WINDOW", progress
            assert line.opens_at == opens
            assert "waiting for window, opens at" in progress.waiting
            await abort_fleet(temporal_ts.client, handle.id, "sre", "not this week")
        with pytest.raises(Exception):  # noqa: B017 - the fleet fails Aborted
            await handle.result()
        progress = await handle.query(FleetRollout.progress)
        assert states(progress) == {line.cluster: "SKIPPED"}
        assert progress.phase == "ABORTED"


async def test_fleet_proceeds_when_the_window_opens(temporal_ts: WorkflowEnvironment) -> None:
    queue = f"fleet-windows-{uuid.uuid4().hex[:6]}"
    opens = await temporal_ts.get_current_time() + timedelta(hours=5)
    spec = one_cluster(frozen_until(opens))
    async with build_worker(temporal_ts.client, task_queue=queue, kubeconfig="/nonexistent"):
        handle = await temporal_ts.client.start_workflow(
            FleetRollout.run, spec, id=f"istio-fleet.{spec.name}", task_queue=queue
        )
        # Waiting for the result skips the five hours; then the cluster starts (and fails at
        # discovery: its context does not exist) — it was let through by the window.
        with pytest.raises(Exception):  # noqa: B017 - one cluster failed
            await handle.result()
        progress = await handle.query(FleetRollout.progress)
        [line] = progress.clusters
        assert line.state == "FAILED" and "KubeconfigError" in line.note, line
        assert line.upgrade_id == f"istio-upgrade.{line.cluster}.1-31-0"
