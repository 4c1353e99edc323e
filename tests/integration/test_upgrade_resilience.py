"""Crash safety: a worker killed mid-batch, retried restarts, dry runs and refused specs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.activities import discovery, migration
from istio_upgrade.devenv.bundles import crds_bundle, revision_bundle
from istio_upgrade.models import UpgradeResult
from istio_upgrade.models.spec import InstallerSpec
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    Stack,
    failure,
    fast_spec,
    istiod_deployments,
    sandbox_kube,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow


def replicasets_per_deployment(stack: Stack, namespaces: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ns in namespaces:
        for rs in stack.objects(f"/apis/apps/v1/namespaces/{ns}/replicasets"):
            for ref in rs["metadata"].get("ownerReferences", []):
                if ref["kind"] == "Deployment":
                    key = f"{ns}/{ref['name']}"
                    counts[key] = counts.get(key, 0) + 1
    return counts


def template_stamps(stack: Stack, namespaces: list[str]) -> dict[str, str | None]:
    stamps: dict[str, str | None] = {}
    for ns in namespaces:
        for kind in ("deployments", "statefulsets", "daemonsets"):
            for obj in stack.objects(f"/apis/apps/v1/namespaces/{ns}/{kind}"):
                annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
                stamps[f"{ns}/{obj['metadata']['name']}"] = annotations.get(
                    "istio-upgrade.io/restart-stamp"
                )
    return stamps


async def test_worker_killed_mid_batch_finishes_without_double_restarts(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        spec = fast_spec(stack.prometheus.url)
        handle = await stack.start(spec)
        assert stack.worker is not None
        # Wait until the second batch is being migrated, then kill the worker.
        await wait_progress(
            handle,
            lambda p: (
                len(p.batches) > 1
                and p.batches[1].status in {"rolling_out", "warming_up", "soaking"}
            ),
            "the second batch to start",
        )
        await stack.worker.shutdown()
        await asyncio.sleep(1)
        replacement = stack.new_worker()
        async with replacement:
            result: UpgradeResult = await asyncio.wait_for(handle.result(), timeout=180)
        assert result.outcome == "SUCCEEDED", result.summary
        plan = result.plan
        assert plan is not None
        counts = replicasets_per_deployment(stack, plan.namespaces)
        assert counts and all(n == 2 for n in counts.values()), counts
        stamps = template_stamps(stack, plan.namespaces)
        # The stamp names this upgrade's run chain, not only its id (a re-run is another).
        uid = f"{handle.id}@{handle.first_execution_run_id}"
        for batch in plan.batches:
            for ns in batch.namespaces:
                for key, stamp in stamps.items():
                    if key.startswith(f"{ns}/"):
                        assert stamp == f"{uid}/batch-{batch.index}", (key, stamp)


async def test_retried_restart_does_not_restart_twice(sandbox_factory: Any) -> None:
    sandbox = await sandbox_factory("demo")
    kube = sandbox_kube(sandbox)
    beats: list[str] = []
    first = await asyncio.to_thread(
        migration.restart, kube, ["frontend", "cart"], "wf/batch-0", 2, beats.append
    )
    again = await asyncio.to_thread(migration.restart, kube, ["frontend", "cart"], "wf/batch-0", 2)
    assert first.restarted == ["cart/Deployment/cart", "frontend/Deployment/web"]
    # Heartbeats while listing each namespace and after each restart.
    assert sorted(beats) == sorted(["frontend", "cart", *first.restarted])
    assert again.restarted == []
    assert sorted(again.already_restarted) == first.restarted


async def test_discovery_heartbeats_while_listing(sandbox_factory: Any) -> None:
    sandbox = await sandbox_factory("demo")
    kube = sandbox_kube(sandbox)
    ticks: list[int] = []
    inventory = await asyncio.to_thread(discovery.discover, kube, lambda: ticks.append(1))
    # One tick per cluster-wide list: webhooks, ReplicaSets, 3 workload kinds, pods, namespaces.
    assert len(ticks) == 7
    assert {ns.name for ns in inventory.namespaces} >= {"frontend", "cart"}


async def test_dry_run_writes_nothing(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        stack.sandbox.reset_stats()
        spec = fast_spec(stack.prometheus.url, dry_run=True)
        result: UpgradeResult = await (await stack.start(spec)).result()
        assert result.outcome == "DRY_RUN"
        assert result.plan is not None and len(result.plan.batches) == 3
        stats = stack.sandbox.stats()
        assert stats["writes"] == 0, stats
        assert stats["total"] > 0


async def test_invalid_spec_fails_before_any_write(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        stack.sandbox.reset_stats()
        spec = fast_spec(
            stack.prometheus.url, migration={"canary": [], "batches": [["frontend"], ["ghost"]]}
        )
        handle = await stack.start(spec)
        cause = await failure(handle)
        assert cause.type == "PrecheckFailed"
        assert "migration.batches[1]" in cause.message and "ghost" in cause.message
        skew = fast_spec(stack.prometheus.url, target={"version": "1.34.0"})
        with pytest.raises(WorkflowFailureError) as info:
            await (await stack.start(skew)).result()
        assert "two minor" in str(info.value.cause)
        # No rendered bundle: refused at plan time, naming the field and how to render one.
        bare = fast_spec(stack.prometheus.url).model_copy(update={"installer": InstallerSpec()})
        cause = await failure(await stack.start(bare, suffix=".bare"))
        assert cause.type == "PrecheckFailed"
        assert "installer.bundle_path" in cause.message and "helm template istiod" in cause.message
        # A bundle holding the base chart's CRDs or a gateway: refused before the lock is taken.
        foreign = revision_bundle("1.31.0", "1-31-0") + crds_bundle()
        mixed = fast_spec(stack.prometheus.url, installer={"bundle_yaml": foreign})
        cause = await failure(await stack.start(mixed, suffix=".mixed"))
        assert cause.type == "PrecheckFailed"
        assert "CustomResourceDefinition/virtualservices.networking.istio.io" in cause.message
        assert "nothing was applied" in cause.message
        # A JSON object that is no UpgradeSpec (as typed into the Web UI) fails, never loops.
        raw = {"cluster": {"name": "Bad_Name"}, "target": {"version": "1.24"}, "x": 1}
        handle = await stack.client.start_workflow(
            "IstioCanaryUpgrade", raw, id="istio-upgrade/bad/raw", task_queue=stack.task_queue
        )
        cause = await failure(handle)
        assert cause.type == "InvalidSpec"
        for field in ("cluster.name", "target.version", "x"):
            assert field in cause.message, cause.message
        assert stack.sandbox.stats()["writes"] == 0


async def test_failed_removal_of_the_old_revision_still_reports_success(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        spec = fast_spec(stack.prometheus.url, cleanup={"grace_seconds": 6})
        handle = await stack.start(spec)
        await wait_progress(
            handle, lambda p: p.phase.value == "GRACE", "the grace period", seconds=120
        )
        # Every namespace has moved and the tags too; now the connected-proxies check of the
        # old revision cannot be made, so the revision must stay — and the upgrade stays a
        # success, not a "rollback" of nothing. Paused, the upgrade holds after its grace
        # period however long stopping Prometheus takes.
        await handle.execute_update(IstioCanaryUpgrade.pause)
        await stack.prometheus.stop()
        await handle.execute_update(IstioCanaryUpgrade.resume)
        result: UpgradeResult = await asyncio.wait_for(handle.result(), timeout=120)
        assert result.outcome == "SUCCEEDED", result.summary
        assert not result.old_revision_removed
        kept = [w for w in result.warnings if "removing it failed" in w]
        assert kept and "remove-revision --cluster demo --revision 1-30-3" in kept[0], kept
        assert istiod_deployments(stack) == {"istiod-1-30-3", "istiod-1-31-0"}
