"""Shared pieces of the fleet integration tests: one sandbox + Prometheus per cluster, one
worker reaching every cluster through a merged kubeconfig (a context per cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from istio_upgrade.devenv import ScrapeTarget
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.devenv.kubeconfig import merge_kubeconfigs
from istio_upgrade.models.fleet import FleetProgress, FleetSpec
from istio_upgrade.worker import build_worker
from istio_upgrade.workflows.fleet import FleetRollout
from tests.integration.upgrade_stack import FAST_GATE

SCENARIOS = Path(__file__).parent / "fleet_scenarios"
GOOD = SCENARIOS / "fleet-small.yaml"
BAD = SCENARIOS / "fleet-small-bad.yaml"
TARGET = "1-31-0"
SOURCE = "1-30-3"
WRITES = {"create", "update", "patch", "delete", "deletecollection", "apply"}

FLEET_SIZE = int(os.environ.get("FLEET_TEST_CLUSTERS", "6"))
"""Clusters of the 6-cluster test (3 stages: 1, 2, the rest); a small CI machine may set 4."""


@dataclass
class FleetCluster:
    name: str
    sandbox: Any
    prometheus: Any


@dataclass
class FleetStack:
    client: Client
    task_queue: str
    kubeconfig: Path
    clusters: dict[str, FleetCluster] = field(default_factory=dict)
    worker: Worker | None = None

    def spec(
        self,
        stages: list[dict[str, Any]],
        *,
        name: str | None = None,
        budget: dict[str, Any] | None = None,
        **extra: Any,
    ) -> FleetSpec:
        template: dict[str, Any] = {
            "installer": {"bundle_yaml": revision_bundle("1.31.0", TARGET)},
            "target": {"version": "1.31.0"},
            "migration": {
                "canary": ["frontend"],
                "growth_factor": 20,
                "max_batch_size": 20,
                "rollout_timeout_seconds": 30,
            },
            "gate": dict(FAST_GATE),
            "cleanup": {"grace_seconds": 1},
        }
        doc: dict[str, Any] = {
            "name": name or f"f{uuid.uuid4().hex[:6]}",
            "clusters": [
                {
                    "name": c.name,
                    "context": c.name,
                    "prometheus_url": c.prometheus.url,
                    "labels": {"index": str(i)},
                }
                for i, c in enumerate(self.clusters.values())
            ],
            "stages": stages,
            "template": template,
            "failure_budget": budget or {"count": 0},
            **extra,
        }
        return FleetSpec.model_validate(doc)

    def writes(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The sandbox's logged writes (creates, patches, deletes …) from ``since`` on; access
        reviews (the permission precheck asks them with ``create``) change nothing."""
        entries, _ = self.clusters[name].sandbox.requests(since)
        return [
            e
            for e in entries
            if str(e.get("verb", "")).lower() in WRITES
            and e.get("apiGroup") != "authorization.k8s.io"
        ]

    def revisions(self, name: str, namespaces: Sequence[str]) -> set[str | None]:
        from tests.integration.upgrade_stack import Stack, pod_revisions

        c = self.clusters[name]
        stack = Stack(self.client, c.sandbox, c.prometheus, self.task_queue)
        return {rev for ns in namespaces for rev in pod_revisions(stack, ns).values()}


@contextlib.asynccontextmanager
async def fleet_stack(
    client: Client,
    sandbox_factory: Any,
    prometheus_factory: Any,
    scenarios: dict[str, Path],
    tmp_path: Path,
) -> AsyncIterator[FleetStack]:
    """Start a sandbox and Prometheus per cluster (in parallel), then one worker for all."""

    async def one(name: str, scenario: Path) -> FleetCluster:
        sandbox = await sandbox_factory(scenario, context=name)
        prometheus = await prometheus_factory([ScrapeTarget(address=sandbox.address)])
        return FleetCluster(name, sandbox, prometheus)

    started = await asyncio.gather(*(one(n, s) for n, s in scenarios.items()))
    await asyncio.gather(
        *(c.prometheus.wait_for_series("istio_requests_total", timeout_s=60) for c in started)
    )
    kubeconfig = merge_kubeconfigs(
        {c.name: Path(c.sandbox.kubeconfig) for c in started}, tmp_path / "fleet-kubeconfig"
    )
    stack = FleetStack(
        client,
        task_queue=f"istio-fleet-{uuid.uuid4().hex[:8]}",
        kubeconfig=kubeconfig,
        clusters={c.name: c for c in started},
    )
    stack.worker = build_worker(client, task_queue=stack.task_queue, kubeconfig=str(kubeconfig))
    async with stack.worker:
        yield stack


async def wait_fleet(
    handle: WorkflowHandle[Any, Any],
    ok: Callable[[FleetProgress], Any],
    what: str,
    seconds: float = 180,
) -> FleetProgress:
    """Query the fleet's progress every 0.3 s until ``ok`` holds; fail after ``seconds``."""
    progress: FleetProgress | None = None
    for _ in range(int(seconds / 0.3)):
        progress = await handle.query(FleetRollout.progress)
        if ok(progress):
            return progress
        await asyncio.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}; last progress: {progress}")


def states(progress: FleetProgress) -> dict[str, str]:
    return {line.cluster: line.state for line in progress.clusters}


RESULT_TIMEOUT = float(os.environ.get("FLEET_TEST_TIMEOUT", "400"))


async def fleet_result(handle: WorkflowHandle[Any, Any], seconds: float = RESULT_TIMEOUT) -> Any:
    """The fleet's result (or its failure); on timeout, fail showing its progress."""
    try:
        return await asyncio.wait_for(handle.result(), seconds)
    except TimeoutError:
        progress = await handle.query(FleetRollout.progress)
        description = await handle.describe()
        pytest.fail(
            f"fleet did not end in {seconds}s: {progress}\n"
            f"{description.raw_description.pending_activities}\n"
            f"{description.raw_description.pending_children}"
        )


FLEET_HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "fleet_histories"


async def record_fleet_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With ``RECORD_HISTORIES=1``, save the fleet run's history for the replay tests (an
    existing file is kept: histories are recorded beside the older ones)."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    path = FLEET_HISTORIES / f"{name}.json"
    if path.exists():
        return
    history = await handle.fetch_history()
    FLEET_HISTORIES.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
