"""The fixtures compose: a sandbox's mesh metrics land in a real Prometheus within seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from ..conftest import PrometheusFactory, SandboxFactory


async def test_prometheus_scrapes_sandbox_mesh_metrics(
    sandbox_factory: SandboxFactory, prometheus_factory: PrometheusFactory
) -> None:
    sandbox = await sandbox_factory("demo", context="shop")
    kubeconfig = yaml.safe_load(await asyncio.to_thread(Path(sandbox.kubeconfig).read_text))
    assert kubeconfig["current-context"] == "shop"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == sandbox.url

    prom = await prometheus_factory([sandbox.address])
    series = await prom.wait_for_series(
        'sum by (destination_workload_namespace) (istio_requests_total{reporter="destination"})',
        timeout_s=30,
    )
    assert "checkout" in {s["metric"]["destination_workload_namespace"] for s in series}
    xds = await prom.wait_for_series('pilot_xds{revision="1-30-3"}', timeout_s=10)
    assert float(xds[0]["value"][1]) > 0

    # Counters advance with wall-clock time, so a 1 s scrape sees them grow.
    query = 'sum(istio_requests_total{reporter="destination"})'
    first = float((await prom.query(query))[0]["value"][1])
    await asyncio.sleep(2.5)
    second = float((await prom.query(query))[0]["value"][1])
    assert second > first
