"""The benchmarks' pure parts: the lower bound, the fit, the figures; each module's --help.

The benchmarks themselves are measurements, never run here (``python -m bench.<name>``).
"""

from __future__ import annotations

import importlib

import pytest

from bench._harness import (
    GATE,
    TIMINGS,
    EventFacts,
    Shape,
    fit_exponent,
    history_figures,
    lower_bound,
    plan_batches,
    prometheus_query_counts,
    queries_in_windows,
    request_figures,
    rollout_seconds,
    scenario_document,
)
from bench.scale import growth
from istio_sandbox.scenario import Scenario

UP = TIMINGS["pod_start_s"] + TIMINGS["pod_ready_s"]


def _rollout(replicas: int, **kw: object) -> float:
    return rollout_seconds(
        replicas,
        start_s=TIMINGS["pod_start_s"],
        ready_s=TIMINGS["pod_ready_s"],
        terminate_s=TIMINGS["pod_terminate_s"],
        **kw,  # type: ignore[arg-type]
    )


def test_rollout_with_surge_one_and_no_unavailable_is_one_pod_at_a_time() -> None:
    # 25% of 2 replicas: maxSurge rounds up to 1, maxUnavailable down to 0.
    assert _rollout(1) == pytest.approx(UP + TIMINGS["pod_terminate_s"])
    assert _rollout(2) == pytest.approx(2 * UP + TIMINGS["pod_terminate_s"])
    assert _rollout(3) == pytest.approx(3 * UP + TIMINGS["pod_terminate_s"])


def test_rollout_of_five_replicas_takes_two_waves() -> None:
    # maxSurge 2, maxUnavailable 1: 3 new pods at once, then the last 2.
    assert _rollout(5) == pytest.approx(2 * UP + TIMINGS["pod_terminate_s"])


def test_rollout_without_surge_replaces_one_pod_at_a_time() -> None:
    assert _rollout(4, max_surge=0, max_unavailable=0) == pytest.approx(4 * UP)
    assert _rollout(0) == 0.0


def test_lower_bound_adds_install_batches_and_grace() -> None:
    bound = lower_bound(replicas=2, batches=9, gate=GATE, timings=TIMINGS, grace_s=2.0)
    per_batch = _rollout(2) + GATE["warmup_seconds"] + GATE["soak_seconds"]
    expected = TIMINGS["pod_start_s"] + TIMINGS["istiod_ready_s"] + 9 * per_batch + 2.0
    assert bound.total_s == pytest.approx(expected)


def test_lower_bound_soak_ends_at_an_evaluation() -> None:
    gate = {**GATE, "soak_seconds": 7, "interval_seconds": 2}
    assert lower_bound(replicas=1, batches=1, gate=gate, timings=TIMINGS, grace_s=0).soak_s == 8


def test_plan_batches_double_up_to_the_cap() -> None:
    assert plan_batches(200, 1, 2, 50) == [1, 2, 4, 8, 16, 32, 50, 50, 37]
    assert sum(plan_batches(2000, 1, 2, 50)) == 2000


def test_fit_exponent_recovers_powers() -> None:
    xs = [200, 600, 2000]
    assert fit_exponent(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert fit_exponent(xs, [7.0 for _ in xs]) == pytest.approx(0.0)
    assert fit_exponent(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_exponent([200], [1.0]) is None
    assert fit_exponent([200, 600], [0.0, 1.0]) is None


def test_growth_skips_failed_sizes() -> None:
    runs = [
        {"shape": {"namespaces": n}, "wall_s": 0.1 * n, "error": None, "worker": {"cpu_s": 5.0}}
        for n in (200, 600)
    ] + [{"shape": {"namespaces": 2000}, "error": "payload too large"}]
    figures = growth(runs)
    assert figures["wall_s"]["exponent"] == pytest.approx(1.0)
    assert figures["worker_cpu_s"]["exponent"] == pytest.approx(0.0)
    assert "2000" not in figures["wall_s"]["values"]


def test_scenario_of_a_shape_is_a_valid_sandbox_scenario() -> None:
    scenario = Scenario.model_validate(scenario_document(Shape(12, 3, 2, traffic_namespaces=4)))
    namespaces = list(scenario.generate[0].namespaces())
    assert len(namespaces) == 12
    assert [w.replicas for w in namespaces[0].workloads] == [2, 2, 2]
    assert sum(1 for ns in namespaces if ns.workloads[0].rps > 0) == 4


def test_history_figures_per_evaluation() -> None:
    def run() -> list[EventFacts]:
        events = [EventFacts("scheduled", 100, "restart_workloads", event_id=1)]
        for i in range(3):
            base = 10 * (i + 1)
            events += [
                EventFacts("timer", 50, event_id=base),
                EventFacts("scheduled", 200, "measure_gate", event_id=base + 1, payload=150),
                EventFacts("completed", 300, scheduled_id=base + 1, event_id=base + 2, payload=250),
            ]
        return events

    figures = history_figures([run(), run()])
    assert figures["runs"] == 2
    assert figures["events_total"] == 20
    assert figures["gate_evaluations"] == 6
    # From one measure_gate scheduled to the next: its completion, then the next timer.
    assert figures["bytes_per_evaluation"] == 550
    assert figures["events_per_evaluation"] == 3
    assert figures["gate_payload_bytes_per_evaluation"] == 400


def test_request_figures_per_namespace_beyond_restarts() -> None:
    entries = [{"verb": "patch", "resource": "deployments", "namespace": "a"}] * 10 + [
        {"verb": "list", "resource": "pods", "namespace": ""}
    ] * 10
    figures = request_figures(entries, migrated=2, restarted=10)
    assert figures["per_migrated_namespace"] == 10
    assert figures["beyond_restarts_per_namespace"] == 5
    assert figures["by_kind"] == {"patch deployments": 10, "list pods": 10}


def test_prometheus_query_counts() -> None:
    text = "\n".join(
        [
            "# HELP prometheus_http_requests_total Counter of HTTP requests.",
            'prometheus_http_requests_total{code="200",handler="/api/v1/query"} 12',
            'prometheus_http_requests_total{code="400",handler="/api/v1/query"} 1',
            'prometheus_http_requests_total{code="200",handler="/api/v1/query_range"} 2',
            'prometheus_http_requests_total{code="200",handler="/metrics"} 99',
            'prometheus_engine_query_duration_seconds_count{slice="inner_eval"} 14',
            'prometheus_engine_query_duration_seconds_count{slice="queue_time"} 14',
        ]
    )
    assert prometheus_query_counts(text) == {"api_queries": 15.0, "engine_queries": 14.0}


@pytest.mark.parametrize(
    "module", ["overhead", "scale", "baseline", "history_size", "sandbox_large"]
)
def test_each_benchmark_answers_help(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    # What `python -m bench.<module> --help` runs, in this process (fast).
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(f"bench.{module}").main(["--help"])
    assert exited.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_queries_are_attributed_to_the_evaluation_windows() -> None:
    samples = [(0.0, 10.0), (1.0, 10.0), (2.0, 15.0), (3.0, 15.0), (4.0, 21.0), (5.0, 21.0)]
    windows = [(1.1, 1.8), (3.2, 3.9), (4.5, 9.0)]
    # The last window never saw a sample after it closed: no figure rather than a wrong one.
    assert queries_in_windows(samples, windows) == [5.0, 6.0]
