"""Operator messages: approvals, rejected approvals, pause/resume and abort (→ rollback)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import AbortRequest, ApproveRequest, Progress
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import fast_spec, pod_revisions, upgrade_stack

pytestmark = pytest.mark.slow


async def wait_progress(
    handle: WorkflowHandle[Any, Any], ok: Any, what: str, seconds: float = 60
) -> Progress:
    for _ in range(int(seconds / 0.2)):
        progress = await handle.query(IstioCanaryUpgrade.progress)
        if ok(progress):
            return progress
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


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
        assert set(pod_revisions(stack, "frontend").values()) == {"1-23-4"}

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
        await handle.execute_update(IstioCanaryUpgrade.resume)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(IstioCanaryUpgrade.resume)  # not paused any more
        await wait_progress(
            handle, lambda p: p.waiting_for and "batch 1" in p.waiting_for, "approval of batch 1"
        )
        assert set(pod_revisions(stack, "frontend").values()) == {"1-24-2"}
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="change freeze", requested_by="bob")
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "Aborted"
        assert "change freeze" in cause.message
        assert set(pod_revisions(stack, "frontend").values()) == {"1-23-4"}
        labels = stack.get("/api/v1/namespaces/frontend")["metadata"]["labels"]
        assert labels.get("istio-injection") == "enabled" and "istio.io/rev" not in labels
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert [a.approver for a in progress.approvals] == ["alice"]


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
        assert set(pod_revisions(stack, "frontend").values()) == {"1-24-2"}
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.batches[0].status == "rolled_back", progress.errors
        assert set(pod_revisions(stack, "frontend").values()) == {"1-23-4"}
        deployments = {
            d["metadata"]["name"]
            for d in stack.objects("/apis/apps/v1/namespaces/istio-system/deployments")
        }
        assert deployments == {"istiod-1-23-4"}
