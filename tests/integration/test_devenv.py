"""The local server launchers start real servers, talk to them, and clean up after themselves."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from istio_upgrade.devenv import LocalTemporal, PrometheusServer, ScrapeTarget, port_is_free

from ..conftest import PrometheusFactory


@pytest_asyncio.fixture(loop_scope="session")
async def metrics_target() -> AsyncIterator[tuple[str, list[int]]]:
    """A tiny exporter whose counter grows on every scrape; yields its address and hit count."""
    hits = [0]

    async def metrics(_: web.Request) -> web.Response:
        hits[0] += 1
        body = (
            "# TYPE devenv_scrapes_total counter\n"
            f'devenv_scrapes_total{{source="test"}} {hits[0]}\n'
        )
        return web.Response(text=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def test_prometheus_scrapes_target_every_second(
    prometheus_factory: PrometheusFactory, metrics_target: tuple[str, list[int]]
) -> None:
    address, hits = metrics_target
    prom = await prometheus_factory([ScrapeTarget(address=address, labels={"cluster": "one"})])

    series = await prom.wait_for_series('devenv_scrapes_total{cluster="one"}', timeout_s=20)
    assert series[0]["metric"]["job"] == "sandbox"
    first, start = hits[0], time.monotonic()
    # 1 s scrape interval: three more scrapes take about 3 s (at Prometheus' default, 3 min).
    while hits[0] - first < 3:
        assert time.monotonic() - start < 15, f"only {hits[0] - first} scrapes in 15 s"
        await asyncio.sleep(0.1)
    up = await prom.query("up")
    assert [s["value"][1] for s in up] == ["1"]


async def test_prometheus_stop_releases_port_and_directory(
    metrics_target: tuple[str, list[int]],
) -> None:
    from istio_upgrade.devenv.binaries import MissingBinaryError

    prom = PrometheusServer([ScrapeTarget(address=metrics_target[0])])
    try:
        await prom.start()
    except MissingBinaryError as error:
        pytest.skip(str(error))
    directory, port = prom.directory, prom.port
    assert port is not None
    assert (directory / "prometheus.yml").read_text().count("scrape_interval: 1s") == 2
    assert not port_is_free(port)

    await prom.stop()
    await prom.stop()  # idempotent

    assert not directory.exists()
    assert port_is_free(port)


async def test_prometheus_reports_bad_rules_with_its_log(tmp_path: Path) -> None:
    from istio_upgrade.devenv import PrometheusStartError
    from istio_upgrade.devenv.binaries import MissingBinaryError

    rules = tmp_path / "broken.yaml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(\n")
    prom = PrometheusServer([ScrapeTarget(address="127.0.0.1:1")], rule_files=[rules])
    with pytest.raises((PrometheusStartError, MissingBinaryError)) as info:
        try:
            await prom.start(timeout_s=10)
        finally:
            await prom.stop()
    if isinstance(info.value, MissingBinaryError):
        pytest.skip(str(info.value))
    assert "exited early" in str(info.value)
    assert "broken" in str(info.value) or "rules-0" in str(info.value)
    assert not prom.running


class Greeting(BaseModel):
    name: str


@workflow.defn(sandboxed=False)
class EchoWorkflow:
    @workflow.run
    async def run(self, greeting: Greeting) -> Greeting:
        return Greeting(name=f"hello {greeting.name}")


async def test_temporal_dev_server_runs_workflow_with_pydantic_payloads(
    temporal_dev_server: LocalTemporal, temporal_local: WorkflowEnvironment
) -> None:
    assert temporal_local is temporal_dev_server.env
    assert temporal_dev_server.address.startswith("127.0.0.1:")
    queue = f"devenv-{uuid.uuid4()}"
    async with Worker(temporal_local.client, task_queue=queue, workflows=[EchoWorkflow]):
        result = await temporal_local.client.execute_workflow(
            EchoWorkflow.run,
            Greeting(name="mesh"),
            id=f"devenv-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert result == Greeting(name="hello mesh")


async def test_temporal_dev_server_with_ui_reports_links() -> None:
    from istio_upgrade.devenv import start_dev_server
    from istio_upgrade.devenv.binaries import MissingBinaryError

    try:
        server = await start_dev_server(ui=True)
    except MissingBinaryError as error:
        pytest.skip(str(error))
    try:
        assert server.ui_port is not None
        assert server.ui_url == f"http://127.0.0.1:{server.ui_port}/namespaces/default/workflows"
        link = server.workflow_url("istio-upgrade/prod/1-31-0")
        assert link is not None and link.endswith("/workflows/istio-upgrade%2Fprod%2F1-31-0")
        assert not port_is_free(server.ui_port)
    finally:
        await server.shutdown()
