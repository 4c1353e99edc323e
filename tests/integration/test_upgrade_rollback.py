"""A canary that burns error budget rolls back: labels restored, old sidecars, no new revision."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    FAST_GATE,
    fast_spec,
    pod_revisions,
    record_history,
    upgrade_stack,
)

pytestmark = pytest.mark.slow


async def test_bad_canary_rolls_back_and_names_the_gate(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, "bad-canary"
    ) as stack:
        before = {
            ns["metadata"]["name"]: ns["metadata"].get("labels", {})
            for ns in stack.objects("/api/v1/namespaces")
        }
        gate = {
            **FAST_GATE,
            "slos": [{"name": "availability", "objective": 0.99, "burn_rate_threshold": 2}],
            "soak_seconds": 10,
            "max_soak_seconds": 20,
            "on_inconclusive": "rollback",
        }
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["checkout", "cart"]},
            gate=gate,
        )
        handle = await stack.start(spec)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        await record_history(handle, "bad-canary-rollback")
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "GateFailed", cause.message
        assert "batch 0" in cause.message and "checkout" in cause.message
        assert "availability" in cause.message

        after = {
            ns["metadata"]["name"]: ns["metadata"].get("labels", {})
            for ns in stack.objects("/api/v1/namespaces")
        }
        assert after == before, "every namespace keeps exactly its original labels"
        for ns in ("checkout", "cart"):
            revisions = pod_revisions(stack, ns)
            assert revisions and set(revisions.values()) == {"1-23-4"}, (ns, revisions)
        deployments = {
            d["metadata"]["name"]
            for d in stack.objects("/apis/apps/v1/namespaces/istio-system/deployments")
        }
        assert deployments == {"istiod-1-23-4"}
        configmaps = {
            c["metadata"]["name"]
            for c in stack.objects("/api/v1/namespaces/istio-system/configmaps")
        }
        assert not {n for n in configmaps if "1-24-2" in n}, configmaps
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK"
        assert progress.batches[0].status == "rolled_back"
        failed = [r for r in progress.batches[0].gate_results if r.verdict == "FAIL"]
        assert failed and failed[-1].queries
