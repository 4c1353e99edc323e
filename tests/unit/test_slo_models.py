"""Validation of SLO and gate specs: bad input names the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from istio_upgrade.models.gate import GateSpec
from istio_upgrade.models.slo import (
    CustomSLI,
    LatencySLI,
    SLOSpec,
    format_duration,
    nearest_bucket_edges,
    parse_duration,
)


def test_defaults_are_one_availability_slo_at_three_nines() -> None:
    spec = GateSpec()
    assert [(s.name, s.objective, s.sli.template) for s in spec.slos] == [
        ("availability", 0.999, "istio-availability")
    ]
    assert (spec.warmup_seconds, spec.soak_seconds, spec.interval_seconds) == (30, 300, 30)
    assert (spec.max_soak_seconds, spec.short_window_seconds) == (900, 300)
    assert spec.on_inconclusive == "wait_for_approval"


def test_objective_one_leaves_no_budget() -> None:
    with pytest.raises(ValidationError, match=r"leaves no error budget; use e\.g\. 0\.999"):
        SLOSpec(name="a", objective=1.0)


def test_objective_zero_rejected() -> None:
    with pytest.raises(ValidationError, match="objective"):
        SLOSpec(name="a", objective=0)


def test_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as err:
        SLOSpec.model_validate({"name": "a", "sli": {"template": "istio-throughput"}})
    text = str(err.value)
    assert "istio-availability" in text and "istio-latency" in text and "custom" in text


def test_latency_threshold_must_be_a_bucket_edge() -> None:
    with pytest.raises(ValidationError, match="use 250 or 500"):
        LatencySLI(threshold_ms=300)
    assert LatencySLI(threshold_ms=250).threshold_ms == 250


def test_nearest_edges_at_the_ends() -> None:
    assert nearest_bucket_edges(0.1) == (0.5,)
    assert nearest_bucket_edges(1e9) == (3600000,)


def test_custom_queries_need_both_placeholders() -> None:
    with pytest.raises(ValidationError, match=r"lacks \{\{window\}\}"):
        CustomSLI(error_query='sum(x{ns=~"{{namespaces}}"})', total_query="sum(y)")


def test_custom_queries_accept_sloth_spelling() -> None:
    sli = CustomSLI(
        error_query='sum by (namespace) (rate(e{namespace=~"{{ .namespaces }}"}[{{.window}}]))',
        total_query='sum by (namespace) (rate(t{namespace=~"{{namespaces}}"}[{{window}}]))',
    )
    assert "{{window}}" in sli.error_query and "{{namespaces}}" in sli.error_query


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="objectve"):
        SLOSpec.model_validate({"name": "a", "objectve": 0.99})
    with pytest.raises(ValidationError, match="soak"):
        GateSpec.model_validate({"soak": 10})


def test_max_soak_must_cover_soak() -> None:
    with pytest.raises(ValidationError, match="raise max_soak_seconds"):
        GateSpec(soak_seconds=600, max_soak_seconds=300)


def test_slo_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="availability repeats"):
        GateSpec(slos=[SLOSpec(name="availability"), SLOSpec(name="availability")])


def test_short_windows_for_demos_are_allowed() -> None:
    spec = GateSpec(warmup_seconds=2, soak_seconds=10, interval_seconds=2, short_window_seconds=5)
    assert spec.soak_seconds == 10


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2592000), ("1h30m", 5400), ("5m", 300), ("90s", 90), ("250ms", 0.25), (12, 12)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "5 minutes", "1h-3m", "m5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    assert [format_duration(s) for s in (300, 3600, 86400, 259200, 90)] == [
        "5m",
        "1h",
        "1d",
        "3d",
        "90s",
    ]


def test_period_is_validated() -> None:
    with pytest.raises(ValidationError, match="period"):
        SLOSpec(name="a", period="a month")
    assert SLOSpec(name="a", period="28d").period_seconds == 28 * 86400


def test_prometheus_url_needs_a_scheme() -> None:
    with pytest.raises(ValidationError, match="must start with http:// or https://"):
        GateSpec(prometheus_url="prometheus:9090")
    assert GateSpec(prometheus_url="http://p:9090/").prometheus_url == "http://p:9090"
