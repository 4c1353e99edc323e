"""Liveness series from Prometheus: a NaN current rate must not read as "traffic stopped"."""

from __future__ import annotations

from datetime import UTC, datetime

from istio_upgrade.activities.prometheus import _parse_liveness
from istio_upgrade.models.gate import GateMeasurements

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _series(ns: str, window: str, value: str) -> dict[str, object]:
    labels = {"destination_workload_namespace": ns, "window": window}
    return {"metric": labels, "value": [0, value]}


def _measurements() -> GateMeasurements:
    return GateMeasurements(
        batch_namespaces=["a", "b"],
        baseline_namespaces=[],
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0,
    )


def test_nan_current_rate_drops_the_namespace_from_liveness() -> None:
    m = _measurements()
    result = [
        _series("a", "pre", "600"),
        _series("a", "current", "NaN"),
        _series("b", "pre", "600"),
        _series("b", "current", "1200"),
    ]
    _parse_liveness(m, result, since=120, pre_window="60s")
    assert "a" not in m.pre_migration_rate and "a" not in m.request_rate
    assert m.pre_migration_rate["b"] == 10.0 and m.request_rate["b"] == 10.0
    assert any("NaN" in e for e in m.errors)
