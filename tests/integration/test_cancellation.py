"""Cancellation, aborts and re-runs never leave a cluster half-migrated.

Each test reproduces a way the promise "every namespace ends on exactly one revision, recorded
in the workflow" broke: a cancel arriving during a rollback, a cancel during an activity, an
abort waiting for a rollout wait to time out, a failed upgrade started again re-taking the lock
its predecessor kept, and a rollback stopping at a namespace deleted meanwhile.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.models import AbortRequest
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    Cli,
    failure,
    fast_spec,
    istiod_deployments,
    lock_holder,
    namespace_labels,
    pod_revisions,
    record_history,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow

CANARY_GATE = {
    "slos": [{"name": "availability", "objective": 0.99}],
    "warmup_seconds": 2,
    "soak_seconds": 8,
    "interval_seconds": 2,
    "max_soak_seconds": 20,
    "short_window_seconds": 8,
    "on_inconclusive": "rollback",
}


async def _cancelled(handle: Any) -> None:
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError), info.value.cause


def _all_on(stack: Any, namespaces: list[str], revision: str) -> None:
    for ns in namespaces:
        revisions = pod_revisions(stack, ns)
        assert revisions and set(revisions.values()) == {revision}, (ns, revisions)


async def test_cancel_during_the_rollback_lets_it_finish(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """bad-canary: the gate fails, the rollback starts, a cancel arrives — it still finishes."""
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, "bad-canary"
    ) as stack:
        before = namespace_labels(stack)
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["checkout", "cart", "accounts"]},
            gate=CANARY_GATE,
        )
        handle = await stack.start(spec)
        await wait_progress(
            handle, lambda p: p.phase.value == "ROLLING_BACK", "the rollback to start", 120
        )
        await handle.cancel()
        await _cancelled(handle)
        await record_history(handle, "cancel-during-rollback-3")
        await record_history(handle, "cancel-during-rollback-4")
        await record_history(handle, "cancel-during-rollback-5")

        assert namespace_labels(stack) == before
        _all_on(stack, ["checkout", "cart", "accounts"], "1-30-3")
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
        assert lock_holder(stack) is None
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK", progress.errors
        assert progress.batches[0].status == "rolled_back"


async def test_cancel_during_an_activity_rolls_back_and_ends_cancelled(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """A cancel while the canary rolls out: not a failed step, a rolled-back cancellation."""
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        before = namespace_labels(stack)
        spec = fast_spec(stack.prometheus.url)
        handle = await stack.start(spec)
        await wait_progress(
            handle,
            lambda p: bool(p.batches) and p.batches[0].status in ("restarting", "rolling_out"),
            "the canary to restart",
        )
        await handle.cancel()
        await _cancelled(handle)

        assert namespace_labels(stack) == before
        _all_on(stack, ["frontend"], "1-30-3")
        assert istiod_deployments(stack) == {"istiod-1-30-3"}
        assert lock_holder(stack) is None
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK", progress.errors
        assert any("cancelled" in e for e in progress.errors), progress.errors


async def test_abort_stops_a_running_rollout_wait(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Any,
) -> None:
    """An abort during a 10-minute rollout wait cancels the wait instead of outwaiting it."""
    scenario = tmp_path / "stuck.yaml"
    scenario.write_text(
        "extends: demo\nname: stuck\nfaults:\n  rollouts:\n"
        "    - {kind: never_ready, namespace: frontend, revision: 1-31-0}\n"
    )
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, scenario
    ) as stack:
        spec = fast_spec(stack.prometheus.url, migration={"rollout_timeout_seconds": 600})
        handle = await stack.start(spec)
        await wait_progress(
            handle,
            lambda p: bool(p.batches) and p.batches[0].status == "rolling_out",
            "the canary's rollout wait",
        )
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="wrong window", requested_by="eve")
        )
        cause = await failure(handle)
        await record_history(handle, "abort-interrupts-wait-4")
        assert cause.type == "Aborted", cause.message
        history = await handle.fetch_history()
        kinds = [e.event_type for e in history.events]
        # The wait was cancelled (and said so) before the rollback's first step started.
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED in kinds
        assert lock_holder(stack) is None


async def test_a_failed_upgrade_started_again_does_not_retake_a_kept_lock(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """A lock kept after an incomplete rollback, held under the same workflow id, refuses the
    re-run until someone unlocks the cluster."""
    client = temporal_dev_server.env.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory) as stack:
        spec = fast_spec(stack.prometheus.url)
        previous = "istio-upgrade.demo.1-31-0"  # the earlier, failed run of the same upgrade
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{stack.sandbox.url}/api/v1/namespaces/istio-system/configmaps",
                json={
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "istio-upgrade-lock", "namespace": "istio-system"},
                    "data": {"holder": previous, "since": "2026-11-30T10:00:00+00:00"},
                },
                timeout=10,
            )
        response.raise_for_status()
        handle = await stack.start(spec)
        cause = await failure(handle)
        assert cause.type == "ClusterBusy", cause.message
        assert previous in cause.message and "istio-upgrade unlock --cluster demo" in cause.message
        assert lock_holder(stack) == previous
        assert istiod_deployments(stack) == {"istiod-1-30-3"}

        # A person repaired the cluster: unlock shows the holder and releases the lock.
        cli = Cli(temporal_dev_server.address, stack.task_queue)
        result = await cli(
            "unlock",
            "--cluster",
            "demo",
            "--context",
            "sandbox",
            "--kubeconfig",
            stack.kubeconfig,
            "--yes",
        )
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert previous in result.stdout
        assert lock_holder(stack) is None


async def test_rollback_skips_a_namespace_deleted_meanwhile(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """A namespace of the batch deleted during the soak: the rollback restores the others."""
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["frontend", "cart"]},
            gate={"soak_seconds": 60, "max_soak_seconds": 60},
        )
        handle = await stack.start(spec)
        await wait_progress(
            handle,
            lambda p: bool(p.batches) and p.batches[0].status == "soaking",
            "the canary to soak",
        )
        assert stack.delete("/api/v1/namespaces/cart") in (200, 202)
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="cart was retired", requested_by="eve")
        )
        cause = await failure(handle)
        assert isinstance(cause, ApplicationError)
        assert cause.type == "Aborted", cause.message
        assert "INCOMPLETE" not in cause.message, cause.message
        _all_on(stack, ["frontend"], "1-30-3")
        assert lock_holder(stack) is None
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK", progress.errors
        assert any("deleted since discovery" in w and "cart" in w for w in progress.warnings)


async def test_a_discovery_that_keeps_failing_ends_failed_saying_so(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """A step before any write that cannot succeed: phase FAILED with the reason, no write."""
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        fault = {"kind": "status", "code": 400, "verbs": ["list"], "resources": ["namespaces"]}
        async with httpx.AsyncClient() as http:
            answer = await http.put(
                f"{stack.sandbox.url}/sandbox/faults", json={"api": [fault]}, timeout=10
            )
            answer.raise_for_status()
            await http.post(f"{stack.sandbox.url}/sandbox/stats/reset", timeout=10)
        handle = await stack.start(fast_spec(stack.prometheus.url))
        cause = await failure(handle)
        assert cause.type == "InvalidObject", cause.message  # the activity's own error type
        assert "nothing was written" in cause.message, cause.message
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "FAILED"
        assert progress.errors and "discovery or planning failed" in progress.errors[-1]
        assert stack.sandbox.stats()["writes"] == 0
