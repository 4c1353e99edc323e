"""The worker's interceptor, metrics runtime and probes, on the real Temporal dev server.

A worker built with :func:`worker_interceptors` on a runtime exporting Prometheus metrics
runs a workflow whose first activity fails (a typed ``ApplicationError``) and whose second
logs: the endpoint counts the failure by activity and kind, and the JSON log lines of the
activity and of the workflow carry the workflow and run ids. The probe server answers from
the worker's state and turns unready when shutdown begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import structlog
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.logging import configure_logging
from istio_upgrade.observability import Health, Telemetry, serve_health, worker_interceptors

pytestmark = pytest.mark.slow

log = structlog.get_logger("tests.telemetry")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@activity.defn(name="telemetry_boom")
def boom() -> None:
    raise ApplicationError("no such thing", type="Boom", non_retryable=True)


@activity.defn(name="telemetry_talk")
def talk() -> str:
    log.info("talking from an activity")
    return "ok"


@workflow.defn(name="TelemetryProbe")
class TelemetryProbe:
    @workflow.run
    async def run(self) -> str:
        workflow.logger.info("workflow says hello")
        with contextlib.suppress(ActivityError):
            await workflow.execute_activity(
                boom,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        return await workflow.execute_activity(talk, start_to_close_timeout=timedelta(seconds=10))


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The worker's JSON logging, its handler writing into the returned buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO", json=True)
    buffer = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def _metrics_line(url: str, *parts: str) -> str:
    text = ""
    for _ in range(200):  # 0.1 s apart: the exporter serves what it has aggregated
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(url)).text
        for line in text.splitlines():
            if all(p in line for p in parts):
                return line
        await asyncio.sleep(0.1)
    pytest.fail(f"no metric line with {parts} in:\n{text[-3000:]}")


async def test_errors_counted_ids_logged_and_readiness_follows_the_worker(
    temporal_dev_server: LocalTemporal, json_logs: io.StringIO
) -> None:
    metrics_port, health_port = free_port(), free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{metrics_port}", counters_total_suffix=True
            )
        )
    )
    client = await Client.connect(
        temporal_dev_server.address, runtime=runtime, data_converter=pydantic_data_converter
    )
    queue = f"telemetry-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[TelemetryProbe],
        activities=[boom, talk],
        activity_executor=ThreadPoolExecutor(2),
        interceptors=worker_interceptors(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    health = Health()
    runner = await serve_health(f"127.0.0.1:{health_port}", health)
    telemetry = Telemetry(health=health, runner=runner, metrics_address=None)
    base = f"http://127.0.0.1:{health_port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
            unready = await http.get(f"{base}/readyz")
            assert unready.status_code == 503 and "not connected" in unready.text
            running = asyncio.ensure_future(worker.run())
            telemetry.serving([worker])
            for _ in range(100):
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get(f"{base}/readyz")).status_code == 200
            handle = await client.start_workflow(
                TelemetryProbe.run, id=f"telemetry-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
            assert await handle.result() == "ok"

            line = await _metrics_line(
                f"http://127.0.0.1:{metrics_port}/metrics",
                "istio_upgrade_activity_errors_total{",
                'activity="telemetry_boom"',
                'kind="Boom"',
                f'task_queue="{queue}"',
            )
            assert line.rsplit(" ", 1)[1] == "1", line

            telemetry.stopping()
            stopping = await http.get(f"{base}/readyz")
            assert stopping.status_code == 503 and "shutting down" in stopping.text
            await worker.shutdown()
            await running
    finally:
        await telemetry.close()

    err = json_logs.getvalue()
    events = []
    for text in err.splitlines():
        if text.startswith("{"):
            events.append(json.loads(text))
    talked = [e for e in events if e.get("event") == "talking from an activity"]
    assert talked, err[-3000:]
    assert talked[0]["workflow_id"] == handle.id
    assert talked[0]["run_id"] == handle.result_run_id
    assert talked[0]["activity_type"] == "telemetry_talk"
    said = [e for e in events if str(e.get("event", "")).startswith("workflow says hello")]
    assert said, events
    assert said[0]["workflow_id"] == handle.id
    assert said[0]["run_id"] == handle.result_run_id
    assert said[0]["workflow_type"] == "TelemetryProbe"
