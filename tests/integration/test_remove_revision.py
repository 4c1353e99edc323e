"""Removing the old revision an upgrade kept: refused while used, removed once unused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.activities.prometheus import wait_revision_disconnected
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.client import ClusterBusyError, running_upgrade_of, start_removal
from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.models import ClusterRef, UpgradeResult
from istio_upgrade.models.removal import RemoveRevisionSpec
from tests.integration.upgrade_stack import (
    Cli,
    failure,
    fast_spec,
    istiod_deployments,
    record_history,
    upgrade_stack,
)

pytestmark = pytest.mark.slow


async def test_kept_revision_is_removed_once_unused(
    temporal_dev_server: LocalTemporal,
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
) -> None:
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory) as stack:
        cluster = ClusterRef(name="demo", context="sandbox", prometheus_url=stack.prometheus.url)
        old = RemoveRevisionSpec(cluster=cluster, revision="1-30-3")

        # Before the upgrade everything uses 1-30-3: refused, naming labels, tags and pods.
        handle = await start_removal(client, old, task_queue=stack.task_queue)
        cause = await failure(handle)
        await record_history(handle, "removal-refused-3")
        assert cause.type == "RevisionInUse"
        for blocker in ("tags pointing at 1-30-3", "istio.io/rev=1-30-3", "frontend/web-"):
            assert blocker in cause.message, cause.message
        assert "istiod-1-30-3" in istiod_deployments(stack)

        # While an upgrade runs, no removal starts: its target may not be in use yet.
        upgrade = await stack.start(fast_spec(stack.prometheus.url))
        probe = RemoveRevisionSpec(cluster=cluster, revision="1-31-0", dry_run=True)
        for _ in range(120):  # visibility may trail the start by a moment
            if await running_upgrade_of(client, "demo") == upgrade.id:
                break
            await asyncio.sleep(0.25)
        with pytest.raises(ClusterBusyError) as busy:
            await start_removal(client, probe, task_queue=stack.task_queue)
        assert busy.value.running_id == upgrade.id

        # The bare pod keeps 1-30-3 installed; the result says how to finish.
        result: UpgradeResult = await upgrade.result()
        assert result.outcome == "SUCCEEDED", result.summary
        assert not result.old_revision_removed
        assert any("remove-revision --cluster demo --revision 1-30-3" in w for w in result.warnings)

        cli = Cli(temporal_dev_server.address, stack.task_queue)
        args = ["remove-revision", "--cluster", "demo", "--context", "sandbox"]
        args += ["--prometheus-url", stack.prometheus.url, "--revision", "1-30-3"]
        refused = await cli(*args)
        assert refused.exit_code == ExitCode.REJECTED, refused.output
        assert "batch/debug-shell" in refused.stderr and "run the removal again" in refused.stderr

        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        disconnected = await wait_revision_disconnected(stack.prometheus.url, "1-30-3")
        assert disconnected, "pilot_xds of 1-30-3 still counts proxies 30 s after the last left"
        dry = await cli.json(*args, "--dry-run")
        assert dry["outcome"] == "DRY_RUN", dry
        assert "istiod-1-30-3" in istiod_deployments(stack)

        removed = await cli.json(*args)
        assert removed["outcome"] == "REMOVED", removed
        assert "Deployment/istio-system/istiod-1-30-3" in removed["deleted"], removed
        gone = stack.get("/apis/apps/v1/namespaces/istio-system/deployments/istiod-1-30-3")
        assert gone["code"] == 404, gone
        assert stack.get("/apis/apps/v1/namespaces/istio-system/deployments/istiod-1-31-0")[
            "status"
        ]["availableReplicas"]

        again = await cli.json(*args)
        assert again["outcome"] == "NOT_INSTALLED", again

        bad = await cli("remove-revision", "--cluster", "demo", "--revision", "Not_A_Name")
        assert bad.exit_code == ExitCode.USAGE
        assert "revision" in bad.stderr and "DNS-1123 label" in bad.stderr
