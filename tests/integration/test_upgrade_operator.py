"""Operator messages: approvals, rejected approvals, pause/resume and abort (→ rollback)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade import client as api
from istio_upgrade.models import AbortRequest, ApproveRequest, ExtendSoakRequest
from istio_upgrade.models.search import CLUSTER, OUTCOME, PHASE
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    istiod_deployments,
    lock_holder,
    pod_revisions,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow


async def test_approval_gates_and_abort_rolls_back(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        spec = fast_spec(
            stack.prometheus.url,
            approvals={"before_first_batch": True, "between_batches": True},
        )
        handle = await stack.start(spec)
        first = await wait_progress(handle, lambda p: p.waiting_for, "the first approval")
        assert first.phase.value == "WAITING_APPROVAL" and "batch 0" in (first.waiting_for or "")
        # Nothing migrated yet: the new revision is installed and Ready, namespaces untouched.
        assert set(pod_revisions(stack, "frontend").values()) == {"1-30-3"}
        # Taken before the first write, by this run of the upgrade (not just its id).
        assert lock_holder(stack) == f"{handle.id}@{handle.first_execution_run_id}"

        answer = await handle.execute_update(
            IstioCanaryUpgrade.approve, ApproveRequest(approver="alice", comment="go")
        )
        assert "batch 0" in answer
        with pytest.raises(WorkflowUpdateFailedError):
            # The canary is migrating now; nothing waits for an approval.
            await handle.execute_update(
                IstioCanaryUpgrade.approve, ApproveRequest(approver="mallory")
            )
        await handle.execute_update(IstioCanaryUpgrade.pause)
        second = await wait_progress(
            handle,
            lambda p: p.waiting_for and "resume" in p.waiting_for,
            "the pause to take effect",
        )
        assert second.paused
        # Paused means held: no batch moves on and no workload restarts meanwhile.
        held = [(b.status, b.restarted) for b in second.batches]
        await asyncio.sleep(2)
        third = await handle.query(IstioCanaryUpgrade.progress)
        assert [(b.status, b.restarted) for b in third.batches] == held
        assert third.waiting_for == second.waiting_for
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IstioCanaryUpgrade.pause)
        assert "already paused" in str(refused.value.cause)
        await handle.execute_update(IstioCanaryUpgrade.resume)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(IstioCanaryUpgrade.resume)  # not paused any more
        await wait_progress(
            handle, lambda p: p.waiting_for and "batch 1" in p.waiting_for, "approval of batch 1"
        )
        assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="change freeze", requested_by="bob")
        )
        cause = await failure(handle)
        assert cause.type == "Aborted"
        assert "change freeze" in cause.message
        assert set(pod_revisions(stack, "frontend").values()) == {"1-30-3"}
        labels = stack.get("/api/v1/namespaces/frontend")["metadata"]["labels"]
        assert labels.get("istio-injection") == "enabled" and "istio.io/rev" not in labels
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert [a.approver for a in progress.approvals] == ["alice"]
        assert lock_holder(stack) is None  # released once the rollback was complete


async def test_cancellation_rolls_back_before_ending(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        spec = fast_spec(stack.prometheus.url, gate={"soak_seconds": 30, "max_soak_seconds": 30})
        handle = await stack.start(spec)
        await wait_progress(
            handle,
            lambda p: p.batches and p.batches[0].status == "soaking",
            "the canary to soak",
        )
        assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.batches[0].status == "rolled_back", progress.errors
        assert set(pod_revisions(stack, "frontend").values()) == {"1-30-3"}
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
        assert lock_holder(stack) is None


async def test_inconclusive_gate_waits_extend_soak_approve_then_abort_mid_batch(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        client = temporal_local.client
        cluster = f"op-{uuid.uuid4().hex[:6]}"
        # 99.99% needs thousands of requests per window before a namespace may PASS: the
        # sandbox's traffic keeps the gate INCONCLUSIVE, and the policy waits for a person.
        spec = fast_spec(
            stack.prometheus.url,
            cluster={"name": cluster},
            gate={
                "slos": [{"name": "availability", "objective": 0.9999}],
                "soak_seconds": 2,
                "max_soak_seconds": 2,
                "on_inconclusive": "wait_for_approval",
            },
        )
        handle = await api.start_upgrade(client, spec, task_queue=stack.task_queue)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await api.extend_soak(client, handle.id, 30)  # still installing
        assert "no batch is soaking" in str(refused.value.cause)
        waiting = await wait_progress(
            handle, lambda p: p.waiting_for and "inconclusive" in p.waiting_for, "the policy"
        )
        assert waiting.phase.value == "WAITING_APPROVAL" and waiting.current_batch == 0
        assert (await handle.describe()).typed_search_attributes.get(PHASE) == "WAITING_APPROVAL"

        # Extending the soak sends the waiting batch back to soaking, for that much longer
        # from now: the SRE took longer to answer than the extension they ask for.
        await asyncio.sleep(6)
        answer = await handle.execute_update(
            IstioCanaryUpgrade.extend_soak, ExtendSoakRequest(seconds=5, requested_by="alice")
        )
        assert answer == "batch 0: soak extended by 5s"
        soaking = await handle.query(IstioCanaryUpgrade.progress)
        assert soaking.phase.value == "SOAKING" and soaking.waiting_for is None
        assert soaking.batches[0].soak_extended_seconds == 5
        evaluations = waiting.batches[0].evaluations
        again = await wait_progress(
            handle, lambda p: p.waiting_for and "inconclusive" in p.waiting_for, "the policy again"
        )
        assert again.batches[0].evaluations >= evaluations + 2

        assert "approved: batch 0" in await api.approve(client, handle.id, "bob", "low traffic")
        # Abort in the middle of batch 1: both batches are rolled back.
        await wait_progress(
            handle,
            lambda p: p.current_batch == 1 and p.batches[1].status != "pending",
            "batch 1 to start",
        )
        await api.abort(client, handle.id, "carol", "stop mid-batch")
        cause = await failure(handle)
        assert cause.type == "Aborted"
        final = await handle.query(IstioCanaryUpgrade.progress)
        statuses = [b.status for b in final.batches]
        assert statuses[:2] == ["rolled_back", "rolled_back"], final.errors
        assert set(statuses[2:]) <= {"pending"}, statuses
        for namespace in [*final.batches[1].namespaces[:3], "frontend"]:
            assert set(pod_revisions(stack, namespace).values()) <= {"1-30-3", None}, namespace
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(CLUSTER) == cluster
        assert attributes.get(PHASE) == attributes.get(OUTCOME) == "ROLLED_BACK"
        with pytest.raises(Exception, match=r"already completed|finished"):
            await api.extend_soak(client, handle.id, 30)
