"""The worker's metrics endpoint, scraped by a real Prometheus, counts what the upgrades did.

Two worker processes (``python -m istio_upgrade.worker``, as in a pod), each with its own
sandbox and a Prometheus scraping both the sandbox and the worker's ``WORKER_METRICS_ADDRESS``:
one runs a clean upgrade, the other a bad canary that the gate FAILs and rolls back. The
verdict counts Prometheus then holds for each worker equal the verdicts of its upgrade,
re-derived from the upgrade's own record (each ``measure_gate`` result in its history,
decided again by the pure ``evaluate_gate`` and checked against the progress's decisive
verdicts and evaluation counts). The probes answer; readiness fails once shutdown begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.contrib.pydantic import pydantic_data_converter

from istio_upgrade.devenv import LocalTemporal, PrometheusServer, ScrapeTarget
from istio_upgrade.models import UpgradeSpec, workflow_id_for
from istio_upgrade.models.gate import GateMeasurements, GateResult
from istio_upgrade.workflows.gate import evaluate_gate
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.test_upgrade_rollback import CANARY_GATE
from tests.integration.upgrade_stack import fast_spec, record_history

pytestmark = pytest.mark.slow

SUMMARY = re.compile(r"^batch (\d+): gate evaluation \d+$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess:
    """``python -m istio_upgrade.worker`` with its metrics and probe ports."""

    def __init__(self, address: str, queue: str, kubeconfig: str, log: Path) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.queue = queue
        self.log = log
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": queue,
            "KUBECONFIG": kubeconfig,
            "LOG_LEVEL": "INFO",
            "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "20",
            "WORKER_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}",
            "WORKER_HEALTH_ADDRESS": f"127.0.0.1:{self.health_port}",
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "istio_upgrade.worker"], env=env, stdout=out, stderr=out
            )

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    async def probe(self, path: str) -> int | None:
        """The probe's status code, or None while nothing listens."""
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"http://127.0.0.1:{self.health_port}{path}")
                return response.status_code
        except httpx.TransportError:
            return None

    async def wait_ready(self) -> None:
        for _ in range(600):  # 0.1 s apart
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            if await self.probe("/readyz") == 200:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"worker never ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=60)


async def verdicts_of(handle: WorkflowHandle[Any, Any], spec: UpgradeSpec) -> Counter[str]:
    """Every gate verdict of the upgrade, decided again from its history's measurements.

    The workflow decides each evaluation with the pure ``evaluate_gate`` from the
    ``measure_gate`` result its history records; doing the same here yields every verdict,
    not only the few the progress keeps. Checked against the progress: the evaluations of
    each batch and each ended batch's decisive verdict.
    """
    progress = await handle.query(IstioCanaryUpgrade.progress)
    converter = pydantic_data_converter.payload_converter
    history = await handle.fetch_history()
    batch_of: dict[int, int] = {}
    results: dict[int, list[GateResult]] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name != "measure_gate":
                continue
            summary = converter.from_payload(event.user_metadata.summary, str)
            match = SUMMARY.match(summary)
            assert match, summary
            batch_of[event.event_id] = int(match.group(1))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            if done.scheduled_event_id not in batch_of:
                continue
            index = batch_of[done.scheduled_event_id]
            measured = converter.from_payload(done.result.payloads[0], GateMeasurements)
            if not measured.batch_namespaces:
                measured.batch_namespaces = list(progress.batches[index].namespaces)
            previous = results.setdefault(index, [])
            result = evaluate_gate(spec.gate, measured, previous, quiet=True)
            result.sequence = len(previous) + 1
            previous.append(result)
    assert results, "no gate evaluation in the history"
    for index, batch_results in results.items():
        batch = progress.batches[index]
        assert len(batch_results) == batch.evaluations, (index, batch.evaluations)
        if batch.gate_results:
            assert batch_results[-1].verdict == batch.gate_results[-1].verdict, index
    return Counter(r.verdict for rs in results.values() for r in rs)


async def scraped_verdicts(
    prometheus: PrometheusServer, worker: WorkerProcess, expected: Counter[str]
) -> dict[str, int]:
    """The worker's gate verdict counters as Prometheus has them, once a scrape after the
    upgrade has landed (the counts reach ``expected``, or 60 s pass)."""
    query = f'sum by (verdict) (istio_upgrade_gate_verdicts_total{{job="{worker.queue}"}})'
    got: dict[str, int] = {}
    for _ in range(240):  # 0.25 s apart
        got = {
            r["metric"]["verdict"]: int(float(r["value"][1])) for r in await prometheus.query(query)
        }
        if got == dict(expected):
            break
        await asyncio.sleep(0.25)
    return got


async def run_upgrade(
    client: Client, worker: WorkerProcess, spec: UpgradeSpec, suffix: str
) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(
        IstioCanaryUpgrade.run,
        spec,
        id=workflow_id_for(spec) + suffix,
        task_queue=worker.queue,
    )
    # The bad canary's workflow fails (rolled back, WorkflowFailureError); its phase is checked.
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def test_scraped_gate_verdicts_match_the_upgrades(
    temporal_dev_server: LocalTemporal,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    client = temporal_dev_server.env.client
    clean_sandbox = await sandbox_factory("demo")
    bad_sandbox = await sandbox_factory("bad-canary")
    tag = f"{os.getpid()}"
    clean = WorkerProcess(
        temporal_dev_server.address,
        f"obs-clean-{tag}",
        str(clean_sandbox.kubeconfig),
        tmp_path / "clean.log",
    )
    bad = WorkerProcess(
        temporal_dev_server.address,
        f"obs-bad-{tag}",
        str(bad_sandbox.kubeconfig),
        tmp_path / "bad.log",
    )
    try:
        clean_prom = await prometheus_factory(
            [
                ScrapeTarget(address=clean_sandbox.address),
                ScrapeTarget(address=clean.metrics_address, job=clean.queue),
            ]
        )
        bad_prom = await prometheus_factory(
            [
                ScrapeTarget(address=bad_sandbox.address),
                ScrapeTarget(address=bad.metrics_address, job=bad.queue),
            ]
        )
        for prom in (clean_prom, bad_prom):
            await prom.wait_for_series("istio_requests_total", timeout_s=30)
        await clean.wait_ready()
        await bad.wait_ready()
        assert await clean.probe("/healthz") == 200
        # The SDK's own metrics are on the same endpoint: the worker's pollers report.
        await clean_prom.wait_for_series(
            f'temporal_num_pollers{{job="{clean.queue}"}}', timeout_s=60
        )

        clean_spec = fast_spec(clean_prom.url)
        bad_spec = fast_spec(
            bad_prom.url,
            migration={"canary": ["checkout", "cart"]},
            gate={**CANARY_GATE, "on_inconclusive": "rollback"},
        )
        clean_handle, bad_handle = await asyncio.gather(
            run_upgrade(client, clean, clean_spec, ".obs-clean"),
            run_upgrade(client, bad, bad_spec, ".obs-bad"),
        )
        clean_result = await clean_handle.query(IstioCanaryUpgrade.progress)
        bad_result = await bad_handle.query(IstioCanaryUpgrade.progress)
        assert clean_result.phase.value == "SUCCEEDED", clean_result.errors
        assert bad_result.phase.value == "ROLLED_BACK", bad_result.errors

        await record_history(clean_handle, "clean-upgrade-6")
        await record_history(bad_handle, "bad-canary-rollback-6")
        clean_verdicts = await verdicts_of(clean_handle, clean_spec)
        bad_verdicts = await verdicts_of(bad_handle, bad_spec)
        assert "FAIL" not in clean_verdicts and clean_verdicts["PASS"] >= 1, clean_verdicts
        assert bad_verdicts["FAIL"] == 1, bad_verdicts
        assert await scraped_verdicts(clean_prom, clean, clean_verdicts) == dict(clean_verdicts)
        assert await scraped_verdicts(bad_prom, bad, bad_verdicts) == dict(bad_verdicts)

        # The rollback and the phases each upgrade went through are counted too.
        rollbacks = await bad_prom.wait_for_series(
            f'istio_upgrade_rollbacks_total{{job="{bad.queue}"}}', timeout_s=30
        )
        assert {r["metric"]["outcome"]: r["value"][1] for r in rollbacks} == {"complete": "1"}
        ended = await clean_prom.wait_for_series(
            f'istio_upgrade_upgrade_phases_total{{job="{clean.queue}",phase="SUCCEEDED"}}',
            timeout_s=30,
        )
        assert ended[0]["value"][1] == "1"

        # Activity logs are JSON lines with the workflow and run ids bound.
        lines = [line for line in clean.log.read_text().splitlines() if '"activity_type"' in line]
        assert any(
            f'"workflow_id": "{clean_handle.id}"' in line
            and f'"run_id": "{clean_handle.result_run_id}"' in line
            for line in lines
        ), lines[:5]

        # Readiness fails as soon as shutdown begins. SIGTERM lands while the install of a
        # new upgrade runs (the bad canary's sandbox is back on the old revision): a mutation
        # the stopping worker finishes, so shutdown lasts long enough to be seen.
        third = await client.start_workflow(
            IstioCanaryUpgrade.run,
            bad_spec,
            id=workflow_id_for(bad_spec) + ".obs-shutdown",
            task_queue=bad.queue,
        )
        for _ in range(1200):  # 0.1 s apart
            pending = (await third.describe()).raw_description.pending_activities
            if any(
                p.activity_type.name == "install_revision"
                and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for p in pending
            ):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("install_revision never started")
        seen: list[int | None] = []
        first = asyncio.Event()

        async def watch() -> None:
            # One connection pool, no pause: the window between SIGTERM and the end of the
            # shutdown is what is being probed.
            async with httpx.AsyncClient(timeout=5) as http:
                while bad.proc.poll() is None:
                    try:
                        status: int | None = (
                            await http.get(f"http://127.0.0.1:{bad.health_port}/readyz")
                        ).status_code
                    except httpx.TransportError:
                        status = None
                    seen.append(status)
                    first.set()
                    await asyncio.sleep(0.005)

        watching = asyncio.ensure_future(watch())
        await first.wait()
        signalled = len(seen)
        bad.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(watching, timeout=90)
        before, after = seen[:signalled], seen[signalled:]
        assert set(before) == {200}, before
        assert 503 in after, after
        # Once unready, never ready again: 503 until the server closes with the process.
        assert 200 not in after[after.index(503) :], after
        assert bad.proc.wait(timeout=60) == 0
        if (await third.describe()).status == WorkflowExecutionStatus.RUNNING:
            await third.terminate("test over")
    finally:
        clean.stop()
        bad.stop()
