"""A canary that burns error budget rolls back: labels restored, old sidecars, no new revision."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    FAST_GATE,
    failure,
    fast_spec,
    istiod_deployments,
    namespace_labels,
    pod_revisions,
    record_history,
    upgrade_stack,
)

pytestmark = pytest.mark.slow

CANARY_GATE = {
    **FAST_GATE,
    # 2x allowed burn on a 99% SLO: checkout's 5% errors burn 5x; long enough soaks to count.
    "slos": [{"name": "availability", "objective": 0.99, "burn_rate_threshold": 2}],
    "soak_seconds": 10,
    "max_soak_seconds": 20,
}


async def test_bad_canary_rolls_back_and_names_the_gate(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, "bad-canary"
    ) as stack:
        before = namespace_labels(stack)
        gate = {**CANARY_GATE, "on_inconclusive": "rollback"}
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["checkout", "cart"]},
            gate=gate,
        )
        handle = await stack.start(spec)
        cause = await failure(handle)
        await record_history(handle, "bad-canary-rollback-2")
        await record_history(handle, "bad-canary-rollback-3")
        await record_history(handle, "bad-canary-rollback-5")
        assert cause.type == "GateFailed", cause.message
        assert "batch 0" in cause.message and "checkout" in cause.message
        assert "availability" in cause.message

        after = namespace_labels(stack)
        assert after == before, "every namespace keeps exactly its original labels"
        for ns in ("checkout", "cart"):
            revisions = pod_revisions(stack, ns)
            assert revisions and set(revisions.values()) == {"1-30-3"}, (ns, revisions)
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
        configmaps = {
            c["metadata"]["name"]
            for c in stack.objects("/api/v1/namespaces/istio-system/configmaps")
        }
        assert not {n for n in configmaps if "1-31-0" in n}, configmaps
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK"
        assert progress.batches[0].status == "rolled_back"
        failed = [r for r in progress.batches[0].gate_results if r.verdict == "FAIL"]
        assert failed and (failed[-1].query_count or failed[-1].queries)


async def test_rollback_spans_runs_after_continue_as_new(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, "bad-canary"
    ) as stack:
        before = namespace_labels(stack)
        # One batch per run: the healthy canary passes in run 1, the batch holding the broken
        # checkout fails in run 2, whose rollback must also undo run 1's batch.
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["frontend"], "max_batches_per_run": 1},
            gate=CANARY_GATE,
        )
        first_run = await stack.start(spec)
        cause = await failure(first_run)  # follows the runs to the last one
        assert cause.type == "GateFailed", cause.message
        assert "batch 1" in cause.message and "checkout" in cause.message

        run_1 = stack.client.get_workflow_handle(first_run.id, run_id=first_run.result_run_id)
        assert (await run_1.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        latest = stack.client.get_workflow_handle(first_run.id)
        await record_history(run_1, "continued-run-2-1")
        await record_history(latest, "continued-run-2-2")
        await record_history(run_1, "continued-run-3-1")
        await record_history(latest, "continued-run-3-2")
        await record_history(run_1, "continued-run-5-1")
        await record_history(latest, "continued-run-5-2")
        progress = await latest.query(IstioCanaryUpgrade.progress)
        assert progress.runs == 2
        assert progress.phase.value == "ROLLED_BACK"
        assert [b.status for b in progress.batches[:2]] == ["rolled_back", "rolled_back"]
        # Run 1's evaluations came along (the decisive one), run 2's are all there.
        assert progress.batches[0].gate_results[-1].verdict != "FAIL"

        after = namespace_labels(stack)
        assert after == before, "every namespace keeps exactly its original labels"
        for ns in ("frontend", "checkout"):
            revisions = pod_revisions(stack, ns)
            assert revisions and set(revisions.values()) == {"1-30-3"}, (ns, revisions)
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
