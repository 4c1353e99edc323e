"""A worker pinned to one cluster's task queue is the only one that touches that cluster.

Two sandbox clusters (``east``, ``west``), each with a Prometheus, and three workers on a
real Temporal server: the main worker runs the workflows (its kubeconfig reaches both
clusters, as user ``main-worker``, so a step routed to it would succeed — and show in the
logs), and one activity-only worker per cluster queue, holding only its own cluster's
credentials (``east-worker``, ``west-worker``). Both upgrades run at once and succeed; each
sandbox's request log shows only its own worker, and every activity of each history was
scheduled on that cluster's queue.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from istio_sandbox.server import kubeconfig_document
from istio_upgrade.devenv import ScrapeTarget
from istio_upgrade.models import UpgradeResult, workflow_id_for
from istio_upgrade.models.spec import cluster_task_queue
from istio_upgrade.worker import build_worker, build_workers, worker_queues
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import fast_spec, pod_revisions, record_history

pytestmark = pytest.mark.slow

CLUSTERS = ("east", "west")


def merged_kubeconfig(path: Path, entries: list[tuple[Any, str, str]]) -> Path:
    """One kubeconfig with a context per (sandbox, context name, token)."""
    docs = [
        kubeconfig_document(s.https_url or s.url, ctx, token, s.ca_pem) for s, ctx, token in entries
    ]
    merged = {**docs[0], "clusters": [], "users": [], "contexts": []}
    for doc in docs:
        for key in ("clusters", "users", "contexts"):
            merged[key] += doc[key]
    path.write_text(yaml.safe_dump(merged))
    return path


class _Pod:
    """The view of a sandbox that ``pod_revisions`` reads."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def objects(self, path: str) -> list[dict[str, Any]]:
        import httpx

        items: list[dict[str, Any]] = (
            httpx.get(f"{self.sandbox.url}{path}", timeout=10).json().get("items", [])
        )
        return items


async def test_pinned_workers_are_the_only_ones_touching_their_clusters(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    client: Client = temporal_local.client
    run = uuid.uuid4().hex[:8]
    main_queue = f"istio-upgrade-{run}"
    sandboxes = {name: await sandbox_factory("demo") for name in CLUSTERS}
    proms = {
        name: await prometheus_factory([ScrapeTarget(address=s.address)])
        for name, s in sandboxes.items()
    }
    await asyncio.gather(
        *(p.wait_for_series("istio_requests_total", timeout_s=30) for p in proms.values())
    )
    main_entries = []
    pinned: dict[str, Path] = {}
    for name, sandbox in sandboxes.items():
        main_entries.append((sandbox, name, sandbox.issue_token("main-worker").token))
        own = sandbox.issue_token(f"{name}-worker").token
        pinned[name] = merged_kubeconfig(tmp_path / f"{name}.kubeconfig", [(sandbox, name, own)])
        # The bare pod would keep the old revision installed; its owner removes it.
        assert _delete(sandbox, "/api/v1/namespaces/batch/pods/debug-shell") == 200
    main_kubeconfig = merged_kubeconfig(tmp_path / "main.kubeconfig", main_entries)

    # The task queues of `istio-upgrade worker --cluster east` (the naming rule), made unique
    # per test run through --activity-queue, as a spec with its own task_queue would.
    queues = {name: f"{cluster_task_queue(name)}.{run}" for name in CLUSTERS}
    assert worker_queues(["east"]) == [("istio-upgrade.cluster.east", False)]
    assert worker_queues(["east"], main=True, main_queue=main_queue)[0] == (main_queue, True)

    main = build_worker(client, task_queue=main_queue, kubeconfig=str(main_kubeconfig))
    cluster_workers = [
        w
        for name in CLUSTERS
        for w in build_workers(
            client,
            worker_queues(activity_queues=[queues[name]]),
            kubeconfig=str(pinned[name]),
        )
    ]
    for sandbox in sandboxes.values():
        sandbox.reset_stats()
    specs = {
        name: fast_spec(
            proms[name].url,
            cluster={"name": name, "context": name, "task_queue": queues[name]},
        )
        for name in CLUSTERS
    }
    async with main, cluster_workers[0], cluster_workers[1]:
        handles = [
            await client.start_workflow(
                IstioCanaryUpgrade.run,
                spec,
                id=f"{workflow_id_for(spec)}.{run}",
                task_queue=main_queue,
            )
            for spec in specs.values()
        ]
        results: list[UpgradeResult] = await asyncio.gather(*(h.result() for h in handles))
    for result in results:
        assert result.outcome == "SUCCEEDED", result.summary

    for name, sandbox in sandboxes.items():
        entries, _ = sandbox.requests()
        users = {e["user"] for e in entries if e.get("user") != "system:admin"}
        assert users == {f"{name}-worker"}, (name, users)
        writes = [e for e in entries if e["verb"] in ("create", "patch", "update", "delete")]
        assert {e["user"] for e in writes} - {"system:admin"} == {f"{name}-worker"}
        assert set(pod_revisions(_Pod(sandbox), "frontend").values()) == {"1-31-0"}  # type: ignore[arg-type]

    await record_history(handles[0], "cluster-task-queue-5")
    for name, handle in zip(CLUSTERS, handles, strict=True):
        history = await handle.fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        kinds = {a.activity_type.name for a in scheduled}
        # Kubernetes steps and the Prometheus ones (which name no cluster) alike.
        assert {"install_revision", "measure_gate", "probe_prometheus"} <= kinds, kinds
        assert {a.task_queue.name for a in scheduled} == {queues[name]}, name
        started = [
            e.workflow_task_started_event_attributes
            for e in history.events
            if e.HasField("workflow_task_started_event_attributes")
        ]
        assert started  # the workflow ran on the main queue:
        assert history.events[0].workflow_execution_started_event_attributes.task_queue.name == (
            main_queue
        )


def _delete(sandbox: Any, path: str) -> int:
    import httpx

    return httpx.delete(f"{sandbox.url}{path}", timeout=10).status_code
