"""Fleet rollouts against a real Temporal server, one sandbox and one Prometheus per cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.client import plan_fleet, start_fleet
from istio_upgrade.models.fleet import FleetResult
from istio_upgrade.workflows.fleet import FleetRollout
from tests.integration.fleet_stack import (
    BAD,
    FLEET_SIZE,
    GOOD,
    SOURCE,
    TARGET,
    fleet_result,
    fleet_stack,
    record_fleet_history,
    states,
)

pytestmark = pytest.mark.slow

NAMESPACES = ["istio-ingress", "frontend", "checkout"]


async def test_fleet_in_three_stages_moves_every_cluster(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    names = [f"c{i}" for i in range(FLEET_SIZE)]
    scenarios = dict.fromkeys(names, GOOD)
    async with fleet_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, scenarios, tmp_path
    ) as stack:
        rest = names[3:]
        spec = stack.spec(
            [
                {"name": "canary", "clusters": [names[0]], "soak_seconds": 1},
                {
                    "name": "early",
                    "groups": [
                        {"name": "a", "clusters": [names[1]]},
                        {"name": "b", "clusters": [names[2]]},
                    ],
                },
                {"name": "rest", "clusters": rest, "max_parallel": 2},
            ],
            max_stages_per_run=2,
        )
        handle = await start_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        result: FleetResult = await fleet_result(handle)
        await record_fleet_history(handle, "fleet-three-stages-1")
        assert result.outcome == "SUCCEEDED", result.summary
        assert {c.cluster: c.state for c in result.clusters} == dict.fromkeys(names, "SUCCEEDED")
        for line in result.clusters:
            assert line.upgrade_id == f"istio-upgrade.{line.cluster}.{TARGET}"
        for name in names:
            assert stack.revisions(name, NAMESPACES) == {TARGET}, name
        # Continued as new after two stages: the last run took the lines over.
        progress = await handle.query(FleetRollout.progress)
        assert progress.runs == 2


async def test_burning_canary_rolls_back_and_the_budget_stops_the_next_stage(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    scenarios = {"bad": BAD, "good": GOOD, "next1": GOOD, "next2": GOOD}
    async with fleet_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, scenarios, tmp_path
    ) as stack:
        marks = {n: c.sandbox.requests()[1] for n, c in stack.clusters.items()}
        spec = stack.spec(
            [
                {"name": "first", "clusters": ["bad", "good"], "max_parallel": 2},
                {"name": "second", "clusters": ["next1", "next2"], "max_parallel": 2},
            ],
            budget={"count": 0},
        )
        handle = await start_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        with pytest.raises(WorkflowFailureError) as info:
            await fleet_result(handle)
        await record_fleet_history(handle, "fleet-budget-exceeded-1")
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "FailureBudgetExceeded"
        progress = await handle.query(FleetRollout.progress)
        assert states(progress) == {
            "bad": "ROLLED_BACK",
            "good": "SUCCEEDED",
            "next1": "SKIPPED",
            "next2": "SKIPPED",
        }, progress
        assert stack.revisions("bad", NAMESPACES) == {SOURCE}
        assert stack.revisions("good", NAMESPACES) == {TARGET}
        # What each upgrade cost, per cluster: the burning canary spent budget.
        spent = {line.cluster: line.budget_spent for line in progress.clusters}
        assert spent["bad"] and max(spent["bad"].values()) > 0, spent
        assert spent["good"], spent
        for name in ("next1", "next2"):
            assert stack.writes(name, marks[name]) == [], name
            assert stack.revisions(name, NAMESPACES) == {SOURCE}


async def test_fleet_plan_dry_runs_every_cluster_and_writes_nothing(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    scenarios = {"p1": GOOD, "p2": GOOD}
    async with fleet_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, scenarios, tmp_path
    ) as stack:
        marks = {n: c.sandbox.requests()[1] for n, c in stack.clusters.items()}
        spec = stack.spec([{"name": "a", "clusters": ["p1"]}, {"name": "b", "clusters": ["p2"]}])
        planned = await plan_fleet(
            stack.client, spec, task_queue=stack.task_queue, kubeconfig=str(stack.kubeconfig)
        )
        assert [s["name"] for s in planned["stages"]] == ["a", "b"]
        for name in ("p1", "p2"):
            one = planned["clusters"][name]
            assert one["outcome"] == "DRY_RUN", one
            assert one["batches"][0] == ["frontend"] and one["errors"] == []
            assert stack.writes(name, marks[name]) == [], name
