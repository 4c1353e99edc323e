"""Fleet-level approve, pause and resume and their validators, against the time-skipping
test server. The clusters' contexts do not exist, so each started cluster fails at once
(within a budget that lets the fleet go on): what is tested is the fleet's own control."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.client import approve_fleet, pause_fleet, resume_fleet
from istio_upgrade.models.fleet import FleetProgress, FleetSpec
from istio_upgrade.worker import build_worker
from istio_upgrade.workflows.fleet import FleetRollout
from tests.integration.fleet_stack import states

TEMPLATE = {"target": {"version": "1.31.0"}, "gate": {"prometheus_url": "http://127.0.0.1:1"}}


def spec(stages: list[dict[str, Any]], names: list[str]) -> FleetSpec:
    return FleetSpec.model_validate(
        {
            "name": f"m{uuid.uuid4().hex[:6]}",
            "clusters": [{"name": n, "context": "absent"} for n in names],
            "stages": stages,
            "template": TEMPLATE,
            "failure_budget": {"count": len(names)},
        }
    )


async def until(handle: Any, ok: Any, what: str) -> FleetProgress:
    for _ in range(200):
        progress: FleetProgress = await handle.query(FleetRollout.progress)
        if ok(progress):
            return progress
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def test_stage_waits_for_approval_and_approve_lets_it_start(
    temporal_ts: WorkflowEnvironment,
) -> None:
    queue = f"fleet-msg-{uuid.uuid4().hex[:6]}"
    a, b = f"a{uuid.uuid4().hex[:5]}", f"b{uuid.uuid4().hex[:5]}"
    fleet = spec(
        [{"name": "one", "clusters": [a]}, {"name": "two", "clusters": [b], "approval": True}],
        [a, b],
    )
    client = temporal_ts.client
    async with build_worker(client, task_queue=queue, kubeconfig="/nonexistent"):
        handle = await client.start_workflow(
            FleetRollout.run, fleet, id=f"istio-fleet.{fleet.name}", task_queue=queue
        )
        with temporal_ts.auto_time_skipping_disabled():
            waiting = await until(handle, lambda p: p.phase == "WAITING_APPROVAL", "approval")
            assert states(waiting) == {a: "FAILED", b: "PENDING"}
            assert waiting.stage == "two" and "approval of stage two" in waiting.waiting
            assert await approve_fleet(client, handle.id, "sre") == "approved: stage two"
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "ClustersFailed"
        ended = await handle.query(FleetRollout.progress)
        assert states(ended) == {a: "FAILED", b: "FAILED"} and ended.phase == "FAILED"
        # An ended fleet takes no update (the server refuses it before any validator).
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await approve_fleet(client, handle.id, "sre")


async def test_pause_holds_new_clusters_until_resume(temporal_ts: WorkflowEnvironment) -> None:
    queue = f"fleet-msg-{uuid.uuid4().hex[:6]}"
    a, b = f"a{uuid.uuid4().hex[:5]}", f"b{uuid.uuid4().hex[:5]}"
    fleet = spec(
        [{"name": "one", "clusters": [a]}, {"name": "two", "clusters": [b], "approval": True}],
        [a, b],
    )
    client = temporal_ts.client
    async with build_worker(client, task_queue=queue, kubeconfig="/nonexistent"):
        handle = await client.start_workflow(
            FleetRollout.run, fleet, id=f"istio-fleet.{fleet.name}", task_queue=queue
        )
        with temporal_ts.auto_time_skipping_disabled():
            await until(handle, lambda p: p.phase == "WAITING_APPROVAL", "approval")
            with pytest.raises(WorkflowUpdateFailedError):
                await resume_fleet(client, handle.id)  # not paused
            assert "no cluster starts" in await pause_fleet(client, handle.id)
            with pytest.raises(WorkflowUpdateFailedError):
                await pause_fleet(client, handle.id)  # already paused
            await approve_fleet(client, handle.id, "sre")
            held = await until(handle, lambda p: p.phase == "PAUSED", "the pause")
            assert states(held)[b] == "PENDING"
            await resume_fleet(client, handle.id)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert states(await handle.query(FleetRollout.progress))[b] == "FAILED"


async def test_a_remote_whose_primary_did_not_upgrade_is_skipped_never_started(
    temporal_ts: WorkflowEnvironment,
) -> None:
    queue = f"fleet-msg-{uuid.uuid4().hex[:6]}"
    p, r = f"p{uuid.uuid4().hex[:5]}", f"r{uuid.uuid4().hex[:5]}"
    data = spec(
        [{"name": "primaries", "clusters": [p]}, {"name": "remotes", "clusters": [r]}], [p, r]
    ).model_dump(mode="json")
    fleet = FleetSpec.model_validate(
        {**data, "meshes": [{"name": "shop", "primaries": [p], "remotes": [r]}]}
    )
    client = temporal_ts.client
    async with build_worker(client, task_queue=queue, kubeconfig="/nonexistent"):
        handle = await client.start_workflow(
            FleetRollout.run, fleet, id=f"istio-fleet.{fleet.name}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        ended = await handle.query(FleetRollout.progress)
    assert states(ended) == {p: "FAILED", r: "SKIPPED"}
    line = next(c for c in ended.clusters if c.cluster == r)
    assert f"primary {p} did not upgrade (FAILED)" in line.note
    # Never started: no upgrade of the remote exists.
    with pytest.raises(RPCError):
        await client.get_workflow_handle(f"istio-upgrade.{r}.1-31-0").describe()
