"""Shared pieces of the upgrade integration tests: one sandbox + Prometheus + worker per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from istio_upgrade.activities import lock
from istio_upgrade.activities.kube_client import Kube, KubeClients
from istio_upgrade.cli.main import cli
from istio_upgrade.devenv import PrometheusServer, ScrapeTarget
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.models import ClusterRef, UpgradeSpec, workflow_id_for
from istio_upgrade.models.progress import Progress
from istio_upgrade.worker import build_worker
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

FAST_GATE: dict[str, Any] = {
    "slos": [{"name": "availability", "objective": 0.99}],
    "warmup_seconds": 1,
    "soak_seconds": 4,
    "interval_seconds": 2,
    "max_soak_seconds": 12,
    "short_window_seconds": 4,
    "on_inconclusive": "proceed",
}


def fast_spec(prometheus_url: str, **overrides: Any) -> UpgradeSpec:
    """A demo upgrade with second-long gate windows: canary ``frontend``, then the rest.

    The target revision is installed from a rendered bundle, as in production.
    """
    target = {"version": "1.31.0", **(overrides.get("target") or {})}
    revision = target.get("revision") or str(target["version"]).replace(".", "-")
    doc: dict[str, Any] = {
        "installer": {"bundle_yaml": revision_bundle(str(target["version"]), revision)},
        "cluster": {"name": "demo", "context": "sandbox", "prometheus_url": prometheus_url},
        "target": {"version": "1.31.0"},
        "migration": {
            "canary": ["frontend"],
            "growth_factor": 20,
            "max_batch_size": 20,
            "rollout_timeout_seconds": 30,
        },
        "gate": dict(FAST_GATE),
        "cleanup": {"grace_seconds": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return UpgradeSpec.model_validate(doc)


@dataclass
class Stack:
    """A sandbox cluster, the Prometheus scraping it and a worker for a private task queue."""

    client: Client
    sandbox: Any
    prometheus: PrometheusServer
    task_queue: str
    worker: Worker | None = None

    @property
    def kubeconfig(self) -> str:
        return str(self.sandbox.kubeconfig)

    def new_worker(self) -> Worker:
        return build_worker(self.client, task_queue=self.task_queue, kubeconfig=self.kubeconfig)

    async def start(self, spec: UpgradeSpec, *, suffix: str = "") -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            IstioCanaryUpgrade.run,
            spec,
            id=workflow_id_for(spec) + suffix,
            task_queue=self.task_queue,
        )

    def get(self, path: str) -> Any:
        # Scenarios such as flaky-api inject 429/5xx into every client, the test's own
        # reads included; retry those like any Kubernetes client would.
        for _ in range(20):
            response = httpx.get(f"{self.sandbox.url}{path}", timeout=10)
            if response.status_code not in {429, 500, 502, 503, 504}:
                break
        return response.json()

    def delete(self, path: str) -> int:
        return httpx.delete(f"{self.sandbox.url}{path}", timeout=10).status_code

    def objects(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(path).get("items", [])
        return items


class Cli:
    """Runs ``istio-upgrade`` against the test's Temporal server and task queue."""

    def __init__(self, address: str, task_queue: str) -> None:
        self.base = ["--address", address, "--task-queue", task_queue]

    async def __call__(self, *args: str) -> Result:
        # The command runs its own event loop (asyncio.run): give it a thread.
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli, [*self.base, *args])

    async def json(self, *args: str, expect: int = 0) -> Any:
        result = await self(*args, "-o", "json")
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)


@contextlib.asynccontextmanager
async def upgrade_stack(
    client: Client, sandbox_factory: Any, prometheus_factory: Any, scenario: str | Path = "demo"
) -> AsyncIterator[Stack]:
    """Start a sandbox and a Prometheus scraping it, then run a worker while the test runs."""
    sandbox = await sandbox_factory(scenario)
    prometheus = await prometheus_factory([ScrapeTarget(address=sandbox.address)])
    await prometheus.wait_for_series("istio_requests_total", timeout_s=30)
    stack = Stack(client, sandbox, prometheus, task_queue=f"istio-upgrade-{uuid.uuid4().hex[:8]}")
    stack.worker = stack.new_worker()
    async with stack.worker:
        yield stack
    await asyncio.to_thread(sandbox.stop)
    await prometheus.stop()


def pod_revisions(stack: Stack, namespace: str) -> dict[str, str | None]:
    """Pod name → revision from its ``istio.io/rev`` annotation (live pods only)."""
    revisions: dict[str, str | None] = {}
    for pod in stack.objects(f"/api/v1/namespaces/{namespace}/pods"):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or pod.get("status", {}).get("phase") in {
            "Succeeded",
            "Failed",
        }:
            continue
        revisions[meta["name"]] = (meta.get("annotations") or {}).get("istio.io/rev")
    return revisions


def namespace_labels(stack: Stack) -> dict[str, dict[str, str]]:
    """Namespace → its labels: a snapshot to compare before and after an upgrade."""
    return {
        ns["metadata"]["name"]: ns["metadata"].get("labels", {})
        for ns in stack.objects("/api/v1/namespaces")
    }


def istiod_deployments(stack: Stack) -> set[str]:
    """Names of the control-plane Deployments in ``istio-system``: which revisions exist."""
    return {
        d["metadata"]["name"]
        for d in stack.objects("/apis/apps/v1/namespaces/istio-system/deployments")
    }


def sandbox_kube(sandbox: Any) -> Kube:
    """The product's Kubernetes client for a sandbox started with the default context."""
    return KubeClients(str(sandbox.kubeconfig)).for_cluster(
        ClusterRef(name="demo", context="sandbox")
    )


def lock_holder(stack: Stack) -> str | None:
    """The upgrade holding the cluster lock ConfigMap, or None when there is no lock."""
    return lock.holder(sandbox_kube(stack.sandbox))


HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"


async def wait_progress(
    handle: WorkflowHandle[Any, Any], ok: Callable[[Progress], Any], what: str, seconds: float = 60
) -> Progress:
    """Query the upgrade's progress every 0.2 s until ``ok`` holds; fail after ``seconds``."""
    for _ in range(int(seconds / 0.2)):
        progress = await handle.query(IstioCanaryUpgrade.progress)
        if ok(progress):
            return progress
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


async def failure(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """The ApplicationError the workflow ended with; the test fails if it did not fail so."""
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With ``RECORD_HISTORIES=1``, save the run's history for the replay tests.

    Histories are recorded beside the older ones, never instead of them: ``name`` carries the
    era of the workflow code it was recorded with (``clean-upgrade-2``), and an existing file
    is kept.
    """
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    path = HISTORIES / f"{name}.json"
    if path.exists():
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
