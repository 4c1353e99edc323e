"""Gate contracts survive Temporal's pydantic data converter unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.contrib.pydantic import pydantic_data_converter

from istio_upgrade.models.gate import (
    ControlPlane,
    Counts,
    GateMeasurements,
    GateQuery,
    GateResult,
    GateSpec,
    SLIWindow,
)
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.workflows.gate import evaluate_gate

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def round_trip(value: object, kind: type) -> object:
    converter = pydantic_data_converter.payload_converter
    payloads = converter.to_payloads([value])
    return converter.from_payloads(payloads, [kind])[0]


def test_query_round_trips_with_every_sli_template() -> None:
    slos = [
        SLOSpec(name="availability"),
        SLOSpec.model_validate(
            {"name": "latency", "sli": {"template": "istio-latency", "threshold_ms": 100}}
        ),
        SLOSpec.model_validate(
            {
                "name": "custom",
                "sli": {
                    "template": "custom",
                    "error_query": "sum by (namespace) (e{n=~'{{namespaces}}'}[{{window}}])",
                    "total_query": "sum by (namespace) (t{n=~'{{namespaces}}'}[{{window}}])",
                },
            }
        ),
    ]
    q = GateQuery(
        prometheus_url="http://p:9090",
        slos=slos,
        batch_namespaces=["a"],
        baseline_namespaces=["o"],
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0 + timedelta(seconds=30),
        pre_migration_start=T0 - timedelta(seconds=60),
        pre_migration_end=T0 - timedelta(seconds=30),
        batch_count=3,
    )
    assert round_trip(q, GateQuery) == q


def test_measurements_and_result_round_trip() -> None:
    window = SLIWindow(
        slo="availability",
        window="since_warmup",
        window_seconds=30,
        inbound={"a": Counts(bad=1, total=900), "o": Counts(bad=0, total=3000)},
        outbound={"a": Counts(bad=0, total=100)},
    )
    m = GateMeasurements(
        batch_namespaces=["a"],
        baseline_namespaces=["o"],
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0 + timedelta(seconds=30),
        slis=[window, window.model_copy(update={"window": "short"})],
        request_rate={"a": 30.0},
        pre_migration_rate={"a": 31.0},
        control_plane=ControlPlane(xds_rejects=0, injection_failures=0, window_seconds=60),
        queries=["q1", "q2"],
    )
    assert round_trip(m, GateMeasurements) == m
    result = evaluate_gate(GateSpec(), m, [])
    assert result.verdict == "PASS", result.reasons
    assert round_trip(result, GateResult) == result
