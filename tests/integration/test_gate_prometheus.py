"""The gate against a real Prometheus scraping a sandbox where some namespaces already run
on the new revision (1-31-0) and others on the old one (1-30-3).

Each window fixture sets the sandbox's traffic faults live, lets Prometheus scrape for
``WINDOW_S`` seconds and returns the window; tests then query that window at its end
(Prometheus' ``time`` parameter), so later fault changes do not disturb them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from istio_sandbox.faults import Faults, TrafficFault
from istio_upgrade.activities.prometheus import measure_gate, query_revision_xds
from istio_upgrade.cli.slo_check import check_once
from istio_upgrade.devenv import PrometheusServer
from istio_upgrade.models.gate import GateQuery, GateResult, GateSpec
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.slo.sloth import load_slos
from istio_upgrade.workflows.gate import evaluate_gate

pytestmark = pytest.mark.slow

WINDOW_S = 10.0
"""Length of each measured window: 40 req/s gives 400 requests, above the 209 needed."""
NEW, OLD = "1-31-0", "1-30-3"
BASELINE = ["old-a", "old-b"]

SCENARIO = """
name: gate-test
cluster_name: gate
timings: {pod_start_s: 0.1, pod_ready_s: 0.1, istiod_ready_s: 0.2}
revisions:
  - version: 1.30.3
  - version: 1.31.0
namespaces:
  - name: old-a
    labels: {istio.io/rev: 1-30-3}
    workloads:
      - {name: front, rps: 60, calls: [new-a/api, new-b/api, new-c/api, old-b/api]}
  - name: old-b
    labels: {istio.io/rev: 1-30-3}
    workloads:
      - {name: api, rps: 40}
  - name: new-a
    labels: {istio.io/rev: 1-31-0}
    workloads:
      - {name: api, rps: 40}
  - name: new-b
    labels: {istio.io/rev: 1-31-0}
    workloads:
      - {name: api, rps: 40, protocol: grpc, latency_ms: 30}
  - name: new-c
    labels: {istio.io/rev: 1-31-0}
    workloads:
      - {name: api, rps: 40}
  - name: new-quiet
    labels: {istio.io/rev: 1-31-0}
    workloads:
      - {name: api, rps: 1}
"""

CUSTOM_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "slo-custom.yaml"
AVAILABILITY = SLOSpec(name="availability", objective=0.999)
LATENCY = SLOSpec.model_validate(
    {
        "name": "latency",
        "objective": 0.99,
        "sli": {"template": "istio-latency", "threshold_ms": 250},
    }
)


@dataclass
class Env:
    sandbox: Any
    prometheus: PrometheusServer
    started: float


@dataclass
class Window:
    start: datetime
    end: datetime
    pre_start: datetime
    pre_end: datetime


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(
    tmp_path_factory: pytest.TempPathFactory, sandbox_factory: Any, prometheus_factory: Any
) -> AsyncIterator[Env]:
    scenario = tmp_path_factory.mktemp("gate") / "gate.yaml"
    scenario.write_text(SCENARIO)
    sandbox = await sandbox_factory(Path(scenario))
    prometheus = await prometheus_factory([sandbox.address])
    await prometheus.wait_for_series('istio_requests_total{destination_workload_namespace="new-a"}')
    yield Env(sandbox=sandbox, prometheus=prometheus, started=time.time())
    # Stop both with the module rather than at session end: they would load later tests.
    await prometheus.stop()
    await asyncio.to_thread(sandbox.stop)


async def open_window(env: Env, faults: Faults) -> Window:
    """Apply ``faults`` after at least ``WINDOW_S`` of history, then measure ``WINDOW_S``."""
    history = env.started + WINDOW_S - time.time()
    if history > 0:
        await asyncio.sleep(history)
    await asyncio.to_thread(env.sandbox.set_faults, faults)
    changed = datetime.now(UTC)
    # Start the window two scrapes after the change, so that series the faults create (5xx
    # codes never seen before) have samples before it opens and ``increase`` counts them
    # whole; end it after the last scrape has landed.
    start = changed + timedelta(seconds=2.5)
    await asyncio.sleep(2.5 + WINDOW_S + 1.0)
    end = start + timedelta(seconds=WINDOW_S)
    return Window(start, end, changed - timedelta(seconds=WINDOW_S), changed)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def healthy(env: Env) -> Window:
    return await open_window(env, Faults())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def canary_faults(env: Env) -> Window:
    """new-a: 3% 5xx, new-b: +300 ms, new-c: traffic silently gone; only on pods of 1-31-0.

    3% (burn 30 against the allowed 14.4) rather than a ratio nearer the threshold: ten
    seconds of 40 req/s make a dozen errors, and one more or less moves the burn by 8%.
    """
    return await open_window(
        env,
        Faults(
            traffic=[
                TrafficFault(namespaces=["new-a"], revision=NEW, error_ratio=0.03),
                TrafficFault(namespaces=["new-b"], revision=NEW, latency_ms=300),
                TrafficFault(namespaces=["new-c"], revision=NEW, traffic_factor=0.0),
            ]
        ),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def global_incident(env: Env) -> Window:
    """Every namespace, whatever its revision, answers 5% 503."""
    return await open_window(env, Faults(traffic=[TrafficFault(revision=None, error_ratio=0.05)]))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def xds_rejects(env: Env) -> Window:
    return await open_window(
        env, Faults(traffic=[TrafficFault(revision=NEW, xds_rejects_per_s=1.0)])
    )


def query(
    url: str,
    window: Window,
    batch: list[str],
    slos: list[SLOSpec],
    at: datetime,
    liveness: bool = False,
) -> GateQuery:
    return GateQuery(
        prometheus_url=url,
        slos=slos,
        batch_namespaces=batch,
        baseline_namespaces=BASELINE,
        new_revision=NEW,
        old_revision=OLD,
        window_start=window.start,
        evaluated_at=at,
        short_window_seconds=5,
        pre_migration_start=window.pre_start if liveness else None,
        pre_migration_end=window.pre_end if liveness else None,
        timeout_seconds=5,
    )


async def gate(
    env: Env, window: Window, batch: list[str], slos: list[SLOSpec], liveness: bool = False
) -> tuple[GateResult, GateResult]:
    """Two consecutive evaluations 2 s apart at the end of ``window``, as the workflow does."""
    spec = GateSpec(slos=slos, short_window_seconds=5, interval_seconds=2)
    results: list[GateResult] = []
    for at in (window.end - timedelta(seconds=2), window.end):
        q = query(env.prometheus.url, window, batch, slos, at, liveness)
        m = await measure_gate(q)
        results.append(evaluate_gate(spec, m, results))
    return results[0], results[1]


async def test_healthy_batch_passes(env: Env, healthy: Window) -> None:
    first, second = await gate(env, healthy, ["new-a", "new-b"], [AVAILABILITY, LATENCY], True)
    assert first.verdict == "PASS", first.reasons
    assert second.verdict == "PASS", second.reasons
    assert second.namespaces["new-a"].requests >= 300
    assert second.burn_rates["availability"] == pytest.approx(0.0, abs=0.5)
    # Two SLOs x two windows, liveness and control plane; the text stays in the worker's log.
    assert second.query_count == 6 and not second.queries


async def test_three_percent_errors_in_one_namespace_fail(env: Env, canary_faults: Window) -> None:
    first, second = await gate(env, canary_faults, ["new-a"], [AVAILABILITY])
    assert first.verdict == "INCONCLUSIVE", first.reasons  # seen once: awaiting confirmation
    assert second.verdict == "FAIL", second.reasons
    gate_a = second.namespaces["new-a"]
    assert gate_a.burn_rates["availability"] == pytest.approx(30, rel=0.25)
    assert "burn:availability" in gate_a.signals
    assert "relative:availability" in gate_a.signals
    assert any("new-a: availability burns" in r for r in second.reasons), second.reasons
    assert any("above the allowed 14.4x" in r for r in second.reasons), second.reasons


async def test_latency_regression_fails(env: Env, canary_faults: Window) -> None:
    _, second = await gate(env, canary_faults, ["new-b"], [LATENCY])
    assert second.verdict == "FAIL", second.reasons
    assert second.namespaces["new-b"].burn_rates["latency"] > 50


async def test_silent_traffic_drop_fails_on_liveness(env: Env, canary_faults: Window) -> None:
    _, second = await gate(env, canary_faults, ["new-c"], [AVAILABILITY], liveness=True)
    assert second.verdict == "FAIL", second.reasons
    assert second.namespaces["new-c"].signals == ["liveness"]
    assert "traffic dropped" in second.reasons[0]


async def test_healthy_neighbours_pass_beside_a_failing_namespace(
    env: Env, canary_faults: Window
) -> None:
    _, second = await gate(env, canary_faults, ["new-a", "new-b"], [AVAILABILITY])
    assert second.namespaces["new-b"].verdict == "PASS"
    assert second.namespaces["new-a"].verdict == "FAIL"


async def test_global_incident_is_inconclusive(env: Env, global_incident: Window) -> None:
    _, second = await gate(env, global_incident, ["new-a", "new-b"], [AVAILABILITY])
    assert second.verdict == "INCONCLUSIVE", second.reasons
    assert second.baseline_burn_rates["availability"] == pytest.approx(50, rel=0.25)
    assert any("global incident" in r for r in second.reasons)


async def test_too_little_traffic_is_inconclusive(env: Env, healthy: Window) -> None:
    _, second = await gate(env, healthy, ["new-quiet"], [AVAILABILITY])
    assert second.verdict == "INCONCLUSIVE", second.reasons
    assert second.namespaces["new-quiet"].requests < 20
    assert "209 are needed" in second.reasons[0]


async def test_control_plane_rejects_fail(env: Env, xds_rejects: Window) -> None:
    first, _ = await gate(env, xds_rejects, ["new-a"], [AVAILABILITY])
    assert first.verdict == "FAIL", first.reasons
    assert "pilot_total_xds_rejects" in first.reasons[0]


async def test_prometheus_down_is_inconclusive() -> None:
    at = datetime.now(UTC)
    window = Window(at - timedelta(seconds=10), at, at, at)
    m = await measure_gate(query("http://127.0.0.1:9", window, ["new-a"], [AVAILABILITY], at))
    assert m.slis == []
    assert any("unreachable" in e for e in m.errors)
    result = evaluate_gate(GateSpec(), m, [])
    assert result.verdict == "INCONCLUSIVE"


async def test_revision_xds_counts_connected_proxies(env: Env) -> None:
    assert await query_revision_xds(env.prometheus.url, NEW) == 4
    assert await query_revision_xds(env.prometheus.url, "9-9-9") is None


async def test_one_shot_check_reads_the_same_numbers(env: Env, healthy: Window) -> None:
    result = await check_once(
        [AVAILABILITY],
        env.prometheus.url,
        ["new-a"],
        BASELINE,
        window_seconds=WINDOW_S,
        now=healthy.end,
    )
    assert result.verdict == "PASS", result.reasons
    assert result.namespaces["new-a"].requests == pytest.approx(40 * WINDOW_S, rel=0.2)


async def test_custom_sli_from_the_docs_fails_like_the_template(
    env: Env, canary_faults: Window
) -> None:
    custom = load_slos(CUSTOM_EXAMPLE)
    _, second = await gate(env, canary_faults, ["new-a", "new-b"], custom)
    assert second.namespaces["new-a"].verdict == "FAIL", second.reasons
    assert second.namespaces["new-b"].verdict == "PASS", second.reasons
