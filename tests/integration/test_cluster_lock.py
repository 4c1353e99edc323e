"""One upgrade per cluster, held by the cluster itself: starts that bypass the starters' check."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.activities import lock
from istio_upgrade.client import start_removal
from istio_upgrade.models import ClusterRef
from istio_upgrade.models.removal import RemoveRevisionSpec
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    istiod_deployments,
    lock_holder,
    namespace_labels,
    sandbox_kube,
    upgrade_stack,
)

pytestmark = pytest.mark.slow

OTHER = "istio-upgrade.demo.1-32-0"


async def test_a_locked_cluster_refuses_upgrades_and_removals(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        # Another upgrade holds the cluster, e.g. one started from the Web UI a moment ago.
        taken = await asyncio.to_thread(lock.acquire, sandbox_kube(stack.sandbox), OTHER)
        assert taken.acquired
        before = namespace_labels(stack)

        # Started straight through Temporal: no visibility check on the way in.
        handle = await stack.start(fast_spec(stack.prometheus.url))
        cause = await failure(handle)
        assert cause.type == "ClusterBusy"
        assert OTHER in cause.message
        assert "istio-upgrade unlock --cluster demo" in cause.message
        assert cause.details and cause.details[0]["outcome"] == "FAILED"
        # Refused before any write: labels untouched, no new control plane, lock not stolen.
        after = namespace_labels(stack)
        assert after == before
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
        assert lock_holder(stack) == OTHER

        # A removal refuses too: the holder may be about to use any revision.
        spec = RemoveRevisionSpec(
            cluster=ClusterRef(name="demo", context="sandbox"), revision="1-34-0", dry_run=True
        )
        removal = await start_removal(stack.client, spec, task_queue=stack.task_queue)
        refused = await failure(removal)
        assert refused.type == "RevisionInUse"
        assert f"locked by upgrade {OTHER}" in refused.message
