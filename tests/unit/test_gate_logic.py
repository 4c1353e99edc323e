"""Decisions of the pure gate: every check, its edge and its reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from istio_upgrade.models.gate import (
    ControlPlane,
    Counts,
    GateMeasurements,
    GateResult,
    GateSpec,
    SLIWindow,
    WindowName,
)
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.workflows.gate import (
    allowed_burn,
    evaluate_gate,
    min_requests,
    poisson_tail,
    z_score,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = GateSpec()


def counts(bad: float, total: float) -> Counts:
    return Counts(bad=bad, total=total)


def measurements(
    batch: dict[str, Counts],
    baseline: dict[str, Counts] | None = None,
    *,
    short: dict[str, Counts] | None = None,
    slo: str = "availability",
    edge: dict[str, Counts] | None = None,
    outbound: dict[str, Counts] | None = None,
    **extra: object,
) -> GateMeasurements:
    """Measurements of one SLO with the same counts in both windows unless ``short`` is given."""
    baseline = baseline if baseline is not None else {"old": counts(5, 50_000)}

    def window(name: WindowName, inbound: dict[str, Counts]) -> SLIWindow:
        return SLIWindow(
            slo=slo,
            window=name,
            window_seconds=120 if name == "since_warmup" else 60,
            inbound={**inbound, **baseline},
            edge_old_to_new=edge or {},
            outbound=outbound or {},
        )

    fields: dict[str, object] = {
        "batch_namespaces": sorted(batch),
        "baseline_namespaces": sorted(baseline),
        "new_revision": "1-31-0",
        "old_revision": "1-30-3",
        "window_start": T0,
        "evaluated_at": T0 + timedelta(seconds=120),
        "slis": [window("since_warmup", batch), window("short", short or batch)],
        "queries": ["sum(x)"],
    }
    fields.update(extra)
    return GateMeasurements.model_validate(fields)


def twice(spec: GateSpec, m: GateMeasurements) -> tuple[GateResult, GateResult]:
    first = evaluate_gate(spec, m, [])
    return first, evaluate_gate(spec, m, [first])


def test_healthy_batch_passes_with_numbers() -> None:
    result = evaluate_gate(SPEC, measurements({"a": counts(0, 5000), "b": counts(1, 5000)}), [])
    assert result.verdict == "PASS"
    assert result.namespaces["a"].verdict == "PASS"
    assert result.burn_rates["availability"] == pytest.approx(0.1)
    assert "0.1x" in result.reasons[0]
    assert result.queries == ["sum(x)"]
    assert result.sequence == 1


def test_sequence_counts_previous_evaluations() -> None:
    m = measurements({"a": counts(0, 5000)})
    first, second = twice(SPEC, m)
    assert (first.sequence, second.sequence) == (1, 2)


def test_two_percent_errors_fail_only_when_confirmed() -> None:
    m = measurements({"a": counts(100, 5000), "b": counts(0, 5000)})
    first, second = twice(SPEC, m)
    assert first.verdict == "INCONCLUSIVE"
    assert "1 of 2" in first.namespaces["a"].reason
    assert second.verdict == "FAIL"
    assert second.namespaces["a"].verdict == "FAIL"
    assert second.namespaces["b"].verdict == "PASS"
    assert "burns 20x" in second.reasons[0]
    assert "burn:availability" in second.namespaces["a"].signals


def test_single_confirmation_fails_at_once() -> None:
    spec = GateSpec(confirmations=1)
    result = evaluate_gate(spec, measurements({"a": counts(100, 5000)}), [])
    assert result.verdict == "FAIL"


def test_short_window_must_also_burn() -> None:
    """Errors that stopped (short window clean) do not trip the fail-fast rule."""
    m = measurements(
        {"a": counts(100, 5000)},
        baseline={"old": counts(80, 50_000)},
        short={"a": counts(0, 2500)},
    )
    _, second = twice(SPEC, m)
    assert "burn:availability" not in second.namespaces["a"].signals


def test_relative_test_fails_a_material_significant_regression() -> None:
    """1% errors (10x burn, below 14.4) against a 0.01% baseline fails by comparison."""
    m = measurements({"a": counts(50, 5000)}, baseline={"old": counts(5, 50_000)})
    _, second = twice(SPEC, m)
    assert second.verdict == "FAIL"
    assert second.namespaces["a"].signals == ["relative:availability"]
    assert "z=" in second.reasons[0]


def test_relative_test_ignores_immaterial_difference() -> None:
    """Significant but below 0.5 budgets of absolute difference: not a regression."""
    m = measurements({"a": counts(300, 1_000_000)}, baseline={"old": counts(100, 1_000_000)})
    result = evaluate_gate(SPEC, m, [])
    assert result.namespaces["a"].z_scores["availability"] > 2.33
    assert result.verdict == "PASS"


def test_relative_test_ignores_insignificant_difference() -> None:
    m = measurements({"a": counts(1, 500)}, baseline={"old": counts(2, 4000)})
    result = evaluate_gate(SPEC, m, [])
    assert result.namespaces["a"].z_scores["availability"] < 2.33
    assert "relative:availability" not in result.namespaces["a"].signals


def test_global_incident_is_inconclusive_not_fail() -> None:
    m = measurements({"a": counts(100, 5000)}, baseline={"old": counts(1000, 50_000)})
    _, second = twice(SPEC, m)
    assert second.verdict == "INCONCLUSIVE"
    assert "global incident" in second.reasons[0]


def test_without_baseline_absolute_burn_alone_fails() -> None:
    m = measurements({"a": counts(100, 5000)}, baseline={})
    _, second = twice(SPEC, m)
    assert second.verdict == "FAIL"


def test_too_little_traffic_is_inconclusive_never_pass() -> None:
    m = measurements({"a": counts(0, 150)})
    result = evaluate_gate(SPEC, m, [])
    assert result.verdict == "INCONCLUSIVE"
    assert result.namespaces["a"].min_requests == 209
    assert "only 150 requests" in result.reasons[0]
    assert "209" in result.reasons[0]


def test_exactly_min_requests_may_pass() -> None:
    result = evaluate_gate(SPEC, measurements({"a": counts(0, 209)}), [])
    assert result.verdict == "PASS"


def test_no_data_for_a_namespace_is_inconclusive() -> None:
    m = measurements({"a": counts(0, 5000)}, batch_namespaces=["a", "ghost"])
    result = evaluate_gate(SPEC, m, [])
    assert result.verdict == "INCONCLUSIVE"
    assert result.namespaces["ghost"].verdict == "INCONCLUSIVE"
    assert "no data" in result.namespaces["ghost"].reason


def test_prometheus_unreachable_is_inconclusive() -> None:
    m = measurements({"a": counts(0, 5000)}, slis=[], errors=["Prometheus unreachable"])
    result = evaluate_gate(SPEC, m, [])
    assert result.verdict == "INCONCLUSIVE"
    assert "Prometheus unreachable" in result.reasons


def test_measurement_errors_block_a_pass() -> None:
    m = measurements({"a": counts(0, 5000)}, errors=["control plane: NaN"])
    assert evaluate_gate(SPEC, m, []).verdict == "INCONCLUSIVE"


def test_silent_traffic_drop_fails_on_liveness() -> None:
    m = measurements(
        {"a": counts(0, 10)},
        request_rate={"a": 0.1},
        pre_migration_rate={"a": 40.0},
    )
    first, second = twice(SPEC, m)
    assert first.verdict == "INCONCLUSIVE"
    assert second.verdict == "FAIL"
    assert "traffic dropped" in second.reasons[0]
    assert "0.25%" in second.reasons[0]


def test_traffic_stopping_altogether_fails_on_liveness() -> None:
    # No current series while the pre-migration one exists: the batch serves nothing at all.
    m = measurements({"a": counts(0, 10)}, pre_migration_rate={"a": 40.0})
    first, second = twice(SPEC, m)
    assert first.verdict == "INCONCLUSIVE"
    assert second.verdict == "FAIL"
    assert "traffic dropped" in second.reasons[0]


def test_liveness_tolerates_half_the_traffic() -> None:
    m = measurements(
        {"a": counts(0, 5000)}, request_rate={"a": 20.5}, pre_migration_rate={"a": 40.0}
    )
    assert evaluate_gate(SPEC, m, []).verdict == "PASS"


@pytest.mark.parametrize("field", ["xds_rejects", "injection_failures"])
def test_control_plane_counter_increase_fails_at_once(field: str) -> None:
    m = measurements(
        {"a": counts(0, 5000)}, control_plane=ControlPlane(window_seconds=60, **{field: 2.0})
    )
    result = evaluate_gate(SPEC, m, [])
    assert result.verdict == "FAIL"
    assert "1-31-0" in result.reasons[0]


def test_control_plane_internal_errors_alone_do_not_fail() -> None:
    m = measurements(
        {"a": counts(0, 5000)}, control_plane=ControlPlane(xds_internal_errors=3, xds_rejects=0)
    )
    assert evaluate_gate(SPEC, m, []).verdict == "PASS"


def test_old_to_new_edge_failures_fail_the_destination() -> None:
    m = measurements(
        {"a": counts(0, 5000)},
        edge={"a": counts(200, 2000)},
    )
    _, second = twice(SPEC, m)
    assert second.verdict == "FAIL"
    assert "edge_old_to_new:availability" in second.namespaces["a"].signals
    assert "old-revision" in second.reasons[0]


def test_outbound_failures_fail_the_source() -> None:
    m = measurements({"a": counts(0, 5000)}, outbound={"a": counts(100, 1000)})
    _, second = twice(SPEC, m)
    assert second.namespaces["a"].verdict == "FAIL"


def test_confirmation_needs_the_same_signal() -> None:
    liveness_only = measurements(
        {"a": counts(0, 5000)}, request_rate={"a": 1.0}, pre_migration_rate={"a": 40.0}
    )
    burning = measurements({"a": counts(100, 5000)})
    first = evaluate_gate(SPEC, liveness_only, [])
    second = evaluate_gate(SPEC, burning, [first])
    assert second.verdict == "INCONCLUSIVE"


def test_budget_fraction_derives_allowed_burn() -> None:
    slo = SLOSpec(name="availability", objective=0.999, period="30d")
    spec = GateSpec(slos=[slo], error_budget_fraction=0.01, soak_seconds=600)
    # 1% of 30 days spread over 4 batches of 10 minutes: 0.01 x 2592000 / 2400 = 10.8.
    assert allowed_burn(spec, slo, batch_count=4) == pytest.approx(10.8)
    m = measurements({"a": counts(60, 5000)}, baseline={}, batch_count=4)
    _, second = twice(spec, m)
    assert second.allowed_burn["availability"] == pytest.approx(10.8)
    assert second.verdict == "FAIL"  # 12x > 10.8x
    assert evaluate_gate(GateSpec(slos=[slo]), m, []).verdict == "PASS"  # 12x < 14.4x


def test_slo_budget_fraction_overrides_gate() -> None:
    slo = SLOSpec(name="availability", error_budget_fraction=0.02)
    spec = GateSpec(slos=[slo], error_budget_fraction=0.01, soak_seconds=600)
    assert allowed_burn(spec, slo, 4) == pytest.approx(21.6)


def test_min_requests_rule_of_three() -> None:
    assert min_requests(14.4, 0.001) == 209
    assert min_requests(1.0, 0.01) == 300
    assert min_requests(2000.0, 0.01) == 1


def test_z_score_matches_hand_computation() -> None:
    # p1 = 0.02, p2 = 0.01, pooled 0.015, se = sqrt(0.015 x 0.985 x (2/1000)) = 0.005436.
    assert z_score(counts(20, 1000), counts(10, 1000)) == pytest.approx(1.8397, abs=1e-3)
    assert z_score(counts(0, 1000), counts(0, 1000)) == 0.0
    assert z_score(counts(0, 0), counts(1, 10)) == 0.0


def test_latency_slo_burns_like_availability() -> None:
    slo = SLOSpec(
        name="latency", objective=0.99, sli={"template": "istio-latency", "threshold_ms": 250}
    )
    spec = GateSpec(slos=[slo])
    m = measurements({"a": counts(2000, 5000)}, slo="latency", baseline={"old": counts(10, 50_000)})
    _, second = twice(spec, m)
    assert second.verdict == "FAIL"
    assert second.namespaces["a"].burn_rates["latency"] == pytest.approx(40.0)


def test_every_slo_is_judged() -> None:
    slos = [SLOSpec(name="availability"), SLOSpec(name="strict", objective=0.9999)]
    spec = GateSpec(slos=slos)
    m = measurements({"a": counts(0, 5000)})
    result = evaluate_gate(spec, m, [])
    # No "strict" windows were measured: never PASS on missing data.
    assert result.verdict == "INCONCLUSIVE"
    assert "no data for SLO strict" in result.reasons[0]


def test_evaluation_is_deterministic() -> None:
    m = measurements({"a": counts(100, 5000), "b": counts(3, 5000)})
    assert evaluate_gate(SPEC, m, []).model_dump() == evaluate_gate(SPEC, m, []).model_dump()


def test_worked_example_of_the_docs() -> None:
    """docs/slo-gate.md: 36/3000 bad against 9/9000, F = 1% over 4 batches of 600 s."""
    spec = GateSpec(error_budget_fraction=0.01, soak_seconds=600)
    m = measurements(
        {"checkout": counts(36, 3000)},
        baseline={"cart": counts(5, 4000), "catalog": counts(4, 5000)},
        batch_count=4,
    )
    first, second = twice(spec, m)
    ns = second.namespaces["checkout"]
    assert second.allowed_burn["availability"] == pytest.approx(10.8)
    assert ns.min_requests == 278
    assert ns.burn_rates["availability"] == pytest.approx(12.0)
    assert ns.z_scores["availability"] == pytest.approx(8.54, abs=0.01)
    assert first.verdict == "INCONCLUSIVE"
    assert second.verdict == "FAIL"
    assert ns.signals == ["burn:availability", "relative:availability"]
    assert evaluate_gate(GateSpec(), m, [first]).namespaces["checkout"].signals == [
        "relative:availability"
    ]


def test_low_traffic_burn_fails_only_when_errors_are_surprising() -> None:
    """Below N_min (209), 1 error in 50 requests could be chance; 8 in 50 cannot."""
    lucky = measurements({"a": counts(1, 50)}, baseline={})
    assert twice(SPEC, lucky)[1].verdict == "INCONCLUSIVE"
    broken = measurements({"a": counts(8, 50)}, baseline={})
    assert twice(SPEC, broken)[1].verdict == "FAIL"


def test_poisson_tail() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 1.0) == pytest.approx(1 - math.exp(-1))
    assert poisson_tail(5, 1.35) == pytest.approx(0.0126, abs=1e-3)
    assert poisson_tail(2, 0.0) == 0.0
