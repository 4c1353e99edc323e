"""Steering fleets: abort, following a running upgrade, termination, Schedules from the CLI."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from istio_sandbox.faults import RolloutFault
from istio_upgrade.client import abort_fleet, start_fleet, start_upgrade
from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.models.fleet import FleetResult
from istio_upgrade.models.progress import Progress
from istio_upgrade.workflows.fleet import FleetRollout
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.fleet_stack import (
    BAD,
    GOOD,
    SOURCE,
    TARGET,
    fleet_result,
    fleet_stack,
    states,
    wait_fleet,
)
from tests.integration.upgrade_stack import Cli

pytestmark = pytest.mark.slow

NAMESPACES = ["istio-ingress", "frontend", "checkout"]


async def wait_upgrade(
    stack: Any, upgrade_id: str, ok: Any, what: str, seconds: float = 120
) -> Progress:
    handle = stack.client.get_workflow_handle(upgrade_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last: Progress | None = None
    while loop.time() < deadline:
        try:
            last = await handle.query(IstioCanaryUpgrade.progress)
        except Exception:  # not started yet
            last = None
        if last is not None and ok(last):
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} of {upgrade_id}; last progress: {last}")


def migrated(progress: Progress) -> bool:
    return any(b.status in {"soaking", "passed", "warming_up"} for b in progress.batches)


async def test_fleet_abort_rolls_back_running_clusters_and_starts_no_more(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    scenarios = {"one": GOOD, "two": GOOD, "later": GOOD}
    async with fleet_stack(
        temporal_dev_server.env.client, sandbox_factory, prometheus_factory, scenarios, tmp_path
    ) as stack:
        mark = stack.clusters["later"].sandbox.requests()[1]
        spec = stack.spec(
            [
                {"name": "first", "clusters": ["one", "two"], "max_parallel": 2},
                {"name": "second", "clusters": ["later"]},
            ]
        )
        handle = await start_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        for name in ("one", "two"):
            await wait_upgrade(stack, f"istio-upgrade.{name}.{TARGET}", migrated, "a batch")
        answer = await abort_fleet(stack.client, handle.id, "sre", "stop the rollout")
        assert "2 running upgrade(s) roll back" in answer
        with pytest.raises(WorkflowFailureError) as info:
            await fleet_result(handle)
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "Aborted"
        progress = await handle.query(FleetRollout.progress)
        assert states(progress) == {"one": "ROLLED_BACK", "two": "ROLLED_BACK", "later": "SKIPPED"}
        for name in ("one", "two"):
            assert stack.revisions(name, NAMESPACES) == {SOURCE}, name
        assert stack.writes("later", mark) == []


async def test_second_fleet_follows_the_upgrade_already_running_on_a_cluster(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    scenarios = {"shared": GOOD, "own": GOOD}
    async with fleet_stack(
        temporal_dev_server.env.client, sandbox_factory, prometheus_factory, scenarios, tmp_path
    ) as stack:
        spec = stack.spec([{"name": "all", "clusters": ["shared", "own"], "max_parallel": 2}])
        # The cluster's upgrade started by hand (or by another fleet) runs first.
        by_hand = await start_upgrade(
            stack.client, spec.cluster_spec("shared"), task_queue=stack.task_queue
        )
        upgrade_id = f"istio-upgrade.shared.{TARGET}"
        assert by_hand.id == upgrade_id
        await wait_upgrade(stack, upgrade_id, lambda p: p.batches, "its plan")
        handle = await start_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        following = await wait_fleet(
            handle, lambda p: states(p)["shared"] in {"FOLLOWING", "SUCCEEDED"}, "the follow"
        )
        assert states(following)["shared"] == "FOLLOWING", following
        result = await fleet_result(handle)
        assert result.outcome == "SUCCEEDED", result.summary
        assert {c.cluster: c.state for c in result.clusters} == {
            "shared": "SUCCEEDED",
            "own": "SUCCEEDED",
        }
        # One upgrade of the shared cluster: the one started by hand, never a twin.
        runs = [w async for w in stack.client.list_workflows(f"WorkflowId = '{upgrade_id}'")]
        assert [w.run_id for w in runs] == [by_hand.result_run_id]
        description = await by_hand.describe()
        assert description.parent_id is None
        assert stack.revisions("shared", NAMESPACES) == {TARGET}


async def test_terminated_fleet_leaves_a_rolling_back_child_to_finish_its_rollback(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    async with fleet_stack(
        temporal_dev_server.env.client, sandbox_factory, prometheus_factory, {"bad": BAD}, tmp_path
    ) as stack:
        spec = stack.spec([{"name": "only", "clusters": ["bad"]}])
        sandbox = stack.clusters["bad"].sandbox
        # Pods the rollback brings back on the old revision never get Ready until the fault
        # is lifted (the running ones are Ready already): the rollback is held in flight,
        # whatever the machine's speed.
        faults = sandbox.faults()
        faults.rollouts.append(RolloutFault(kind="never_ready", namespace="checkout",
                                            revision=SOURCE))  # fmt: skip
        sandbox.set_faults(faults)
        handle = await start_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        upgrade_id = f"istio-upgrade.bad.{TARGET}"
        await wait_upgrade(
            stack, upgrade_id, lambda p: p.phase.value == "ROLLING_BACK", "its rollback", 180
        )
        await handle.terminate(reason="test: fleet terminated mid-rollback")
        child = stack.client.get_workflow_handle(upgrade_id)
        assert (await child.describe()).status == WorkflowExecutionStatus.RUNNING
        sandbox.clear_faults()
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(child.result(), 300)
        progress = await child.query(IstioCanaryUpgrade.progress)
        # The rollback ran to its end: every pod is back on the old revision.
        assert progress.phase.value == "ROLLED_BACK", progress
        assert stack.revisions("bad", NAMESPACES) == {SOURCE}
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def listed_as(cli: Cli, schedule_id: str, present: bool) -> None:
    """Wait until ``schedule list`` shows (or no longer shows) the Schedule: the list comes
    from visibility, which lags the Schedule's own state."""
    for _ in range(100):
        listed = await cli.json("schedule", "list")
        if (schedule_id in [row["id"] for row in listed]) == present:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"schedule list never {'showed' if present else 'dropped'} {schedule_id}")


async def test_schedule_created_by_the_cli_starts_the_fleet_on_trigger(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    async with fleet_stack(
        temporal_dev_server.env.client, sandbox_factory, prometheus_factory, {"sched": GOOD},
        tmp_path,
    ) as stack:  # fmt: skip
        spec = stack.spec([{"name": "only", "clusters": ["sched"]}], name="nightly")
        fleet_file = tmp_path / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True)))
        cli = Cli(temporal_dev_server.address, stack.task_queue)
        schedule_id = f"istio-fleet.nightly-{uuid.uuid4().hex[:6]}"
        created = await cli.json(
            "schedule", "create", "-f", str(fleet_file), "--calendar", "sat 02:00",
            "--timezone", "Europe/Berlin", "--id", schedule_id,
            "--kubeconfig", str(stack.kubeconfig),
        )  # fmt: skip
        assert created == {"schedule_id": schedule_id}
        described = await cli.json("schedule", "describe", schedule_id)
        assert described["overlap"] == "SKIP" and described["time_zone"] == "Europe/Berlin"
        assert described["recent_runs"] == [] and described["next_action_times"]
        await listed_as(cli, schedule_id, True)
        await cli.json("schedule", "trigger", schedule_id)
        run_id = ""
        for _ in range(150):
            described = await cli.json("schedule", "describe", schedule_id)
            if described["recent_runs"]:
                run_id = described["recent_runs"][0]
                break
            await asyncio.sleep(0.2)
        assert run_id.startswith(f"istio-fleet.nightly.{TARGET}-"), run_id
        run = stack.client.get_workflow_handle(run_id, result_type=FleetResult)
        result = await fleet_result(run)
        assert result.outcome == "SUCCEEDED", result.summary
        assert [c.upgrade_id for c in result.clusters] == [f"istio-upgrade.sched.{TARGET}"]
        assert stack.revisions("sched", NAMESPACES) == {TARGET}
        status = await cli.json("fleet", "status", "-f", str(fleet_file), "--id", run_id)
        assert status["phase"] == "SUCCEEDED"
        await cli.json("schedule", "pause", schedule_id)
        assert (await cli.json("schedule", "describe", schedule_id))["paused"] is True
        await cli.json("schedule", "delete", schedule_id)
        await listed_as(cli, schedule_id, False)
