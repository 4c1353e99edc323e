"""deploy/prometheus/scrape-istiod.yaml labels istiod's metrics with the pod's revision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml
from aiohttp import web

from ..conftest import PrometheusFactory

SCRAPE_FILE = Path(__file__).parents[2] / "deploy" / "prometheus" / "scrape-istiod.yaml"


@pytest_asyncio.fixture(loop_scope="session")
async def istiod_metrics() -> AsyncIterator[str]:
    """An endpoint exposing istiod's metrics the way istiod does: no revision label."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            text='# TYPE pilot_xds gauge\npilot_xds{version="1.31.0"} 7\n',
            content_type="text/plain",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def static_pod(address: str, pod: str, labels: dict[str, str]) -> dict[str, Any]:
    """A static target carrying the ``__meta_kubernetes_*`` labels Kubernetes discovery sets."""
    meta = {f"__meta_kubernetes_pod_label_{k}": v for k, v in labels.items()}
    meta |= {
        "__meta_kubernetes_namespace": "istio-system",
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_container_port_number": "15014",
    }
    return {"targets": [address], "labels": meta}


def shipped_job_with(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped job with Kubernetes discovery replaced by static pods; relabels unchanged."""
    job: dict[str, Any] = yaml.safe_load(SCRAPE_FILE.read_text())["scrape_configs"][0]
    del job["kubernetes_sd_configs"]
    job["static_configs"] = groups
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    return job


async def test_only_istiod_pods_are_scraped_and_labelled_with_their_revision(
    prometheus_factory: PrometheusFactory, istiod_metrics: str
) -> None:
    job = shipped_job_with(
        [
            static_pod(
                istiod_metrics, "istiod-1-31-0-7d9f", {"app": "istiod", "istio_io_rev": "1-31-0"}
            ),
            # Same endpoint, but not an istiod pod: the keep rule must drop it.
            static_pod(
                istiod_metrics, "reviews-v1-5c7", {"app": "reviews", "istio_io_rev": "1-31-0"}
            ),
        ]
    )
    prom = await prometheus_factory([], extra_scrape_configs=[job])

    series = await prom.wait_for_series("pilot_xds", timeout_s=20)

    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["revision"] == "1-31-0"
    assert labels["version"] == "1.31.0"
    assert labels["namespace"] == "istio-system"
    assert labels["pod"] == "istiod-1-31-0-7d9f"
    assert labels["job"] == "istiod"
    assert not any(name.startswith("__meta") for name in labels)
    up = await prom.query('up{job="istiod"}')
    assert [s["metric"]["pod"] for s in up] == ["istiod-1-31-0-7d9f"]
