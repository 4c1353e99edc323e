"""A real Prometheus scraping a sandbox computes the error ratio the fault model sets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from istio_sandbox.server import SandboxProcess
from istio_upgrade.devenv import PrometheusServer

pytestmark = pytest.mark.slow

ERROR_RATIO = 0.1
SCENARIO = {
    "name": "ratio",
    "timings": {"pod_start_s": 0.1, "pod_ready_s": 0.1, "istiod_ready_s": 0.1},
    "revisions": [{"version": "1.30.3"}, {"version": "1.31.0"}],
    "namespaces": [
        {
            "name": "shop",
            "labels": {"istio.io/rev": "1-30-3"},
            "workloads": [
                {"name": "web", "replicas": 2, "rps": 100, "calls": ["api"]},
                {"name": "api", "replicas": 2, "rps": 200},
            ],
        },
    ],
    "faults": {
        "traffic": [{"namespaces": ["shop"], "workloads": ["api"], "error_ratio": ERROR_RATIO}]
    },
}
RATIO_QUERY = (
    'sum(increase(istio_requests_total{reporter="destination",response_code=~"5.."}[20s]))'
    ' / sum(increase(istio_requests_total{reporter="destination"}[20s]))'
)


async def test_prometheus_sees_the_configured_error_ratio(
    tmp_path: Path,
    sandbox_factory: Callable[..., Awaitable[SandboxProcess]],
    prometheus_factory: Callable[..., Awaitable[PrometheusServer]],
) -> None:
    path = tmp_path / "ratio.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    sandbox = await sandbox_factory(path)
    prom = await prometheus_factory([sandbox.address])
    await prom.wait_for_series('istio_requests_total{reporter="destination"}', timeout_s=15)
    # Enough scrapes for increase() over many ticks of the traffic model.
    await asyncio.sleep(8)
    result: list[dict[str, Any]] = await prom.query(RATIO_QUERY)
    (sample,) = result
    # web receives 100 rps from outside, api 200 rps from web; only api fails.
    expected = ERROR_RATIO * 200 / (200 + 100)
    assert float(sample["value"][1]) == pytest.approx(expected, abs=0.01)
    api_query = RATIO_QUERY.replace("{reporter", '{destination_workload="api",reporter')
    api_only = await prom.query(api_query)
    assert float(api_only[0]["value"][1]) == pytest.approx(ERROR_RATIO, abs=0.01)
    xds = await prom.query('pilot_xds{revision="1-30-3",version="1.30.3"}')
    assert float(xds[0]["value"][1]) == 4
    idle = await prom.query('pilot_xds{revision="1-31-0"}')
    assert [float(s["value"][1]) for s in idle] == [0]
