"""A worker rollout (SIGTERM) during any activity loses nothing and waits for no timeout.

One upgrade; each time an activity of a type not yet interrupted is running, the worker
running it gets SIGTERM and a fresh worker starts. A stopping worker lets mutations finish
and hands waits over at once (``WorkerShutdown``, resumed from their heartbeats), so the
history must show no activity timing out, and the upgrade must succeed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowExecutionStatus

from istio_upgrade.devenv import LocalTemporal, ScrapeTarget
from istio_upgrade.models import workflow_id_for
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import Stack, fast_spec, pod_revisions

pytestmark = pytest.mark.slow

MUTATIONS = {
    "apply_crds",
    "install_revision",
    "relabel_namespaces",
    "label_workloads",
    "restart_workloads",
    "move_tags",
    "uninstall_revision",
    "acquire_cluster_lock",
    "release_cluster_lock",
}
WAITS = {"wait_revision_ready", "wait_rollouts"}


def _worker(address: str, queue: str, kubeconfig: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "KUBECONFIG": kubeconfig,
        "LOG_LEVEL": "INFO",
        "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "20",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "istio_upgrade.worker"], env=env, stdout=out, stderr=out
        )


async def test_sigterm_during_each_activity_loses_nothing(
    temporal_dev_server: LocalTemporal,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    sandbox = await sandbox_factory("demo")
    prometheus = await prometheus_factory([ScrapeTarget(address=sandbox.address)])
    await prometheus.wait_for_series("istio_requests_total", timeout_s=30)
    client = temporal_dev_server.env.client
    queue = f"sigterm-{os.getpid()}"
    log = tmp_path / "workers.log"
    spec = fast_spec(prometheus.url, cleanup={"grace_seconds": 2})
    worker = _worker(temporal_dev_server.address, queue, str(sandbox.kubeconfig), log)
    stopping: list[subprocess.Popen[bytes]] = []
    interrupted: list[str] = []
    handle = await client.start_workflow(
        IstioCanaryUpgrade.run, spec, id=workflow_id_for(spec) + ".sigterm", task_queue=queue
    )
    try:
        for _ in range(3000):  # 0.1 s apart: the upgrade takes well under five minutes
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            for pending in description.raw_description.pending_activities:
                kind = pending.activity_type.name
                started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                if started and kind not in interrupted:
                    interrupted.append(kind)
                    worker.send_signal(signal.SIGTERM)
                    stopping.append(worker)
                    worker = _worker(
                        temporal_dev_server.address, queue, str(sandbox.kubeconfig), log
                    )
            await asyncio.sleep(0.1)
        result = await handle.result()
    finally:
        for proc in [*stopping, worker]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*stopping, worker]:
            proc.wait(timeout=60)

    assert result.outcome == "SUCCEEDED", result.summary
    assert {"install_revision", "restart_workloads", "wait_rollouts", "measure_gate"} <= set(
        interrupted
    ), interrupted
    history = await handle.fetch_history()
    timed_out = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
    ]
    assert not timed_out, f"activities lost to a timeout (events {timed_out}): {interrupted}"
    kinds: dict[int, str] = {}
    retried: dict[str, list[str]] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            kinds[event.event_id] = attrs.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.attempt > 1:
                kind = kinds[started.scheduled_event_id]
                retried.setdefault(kind, []).append(started.last_failure.message)
    # A mutation interrupted by SIGTERM finished on the stopping worker: no second attempt.
    assert not set(retried) & MUTATIONS, retried
    # A wait still waiting hands over at once, saying why, and the next worker resumes it (one
    # that ends within its next poll may finish on the stopping worker instead).
    handed = [kind for kind in WAITS & set(interrupted) if kind in retried]
    assert handed, (interrupted, retried)
    for kind in handed:
        assert all("shutting down" in m for m in retried[kind]), retried
    # Every stopped worker exited on its own, within its grace period.
    assert all(proc.returncode == 0 for proc in stopping), [p.returncode for p in stopping]
    stack = Stack(client, sandbox, prometheus, task_queue=queue)
    assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
