"""The gate's PromQL: valid for Prometheus, scoped to the right namespaces and reporters."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from istio_upgrade.activities.prometheus import (
    control_plane_query,
    liveness_query,
    parse_sli,
    window_range,
)
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.slo import promql
from istio_upgrade.slo.sloth import load_slos

ROOT = Path(__file__).resolve().parents[2]
AVAILABILITY = SLOSpec(name="availability")
LATENCY = SLOSpec.model_validate(
    {
        "name": "latency",
        "objective": 0.99,
        "sli": {"template": "istio-latency", "threshold_ms": 0.5},
    }
)
CUSTOM = load_slos(ROOT / "docs/examples/slo-custom.yaml")[0]


def all_queries() -> list[str]:
    batch, baseline = ["new-a", "new-b"], ["old-a"]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        *(promql.sli_query(s, batch, baseline, "30s") for s in (AVAILABILITY, LATENCY, CUSTOM)),
        promql.sli_query(AVAILABILITY, batch, [], "30s"),
        liveness_query(batch, "30s", "60s", at),
        control_plane_query("1-31-0", "90s"),
    ]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_gate_query_parses(tmp_path: Path) -> None:
    """promtool parses rule expressions with the server's parser: a cheap syntax check."""
    rules = [{"record": f"gate:check:{i}", "expr": q} for i, q in enumerate(all_queries())]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "gate", "rules": rules}]}))
    run = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_availability_views_use_the_right_reporter_and_grouping() -> None:
    text = promql.sli_query(AVAILABILITY, ["new-a"], ["old-a", "old-b"], "30s")
    inbound, _, _, _, outbound_bad, _ = text.split("\n  or ")
    assert 'reporter="destination",destination_workload_namespace=~"new-a|old-a|old-b"' in inbound
    assert 'reporter="source",source_workload_namespace=~"old-a|old-b"' in text
    assert 'destination_workload_namespace=~"new-a",response_code' in text
    assert outbound_bad.startswith("label_replace(label_replace(sum by (source_workload_namespace)")
    assert 'grpc_response_status=~"2|4|12|13|14|15"' in text
    assert 'response_code!~"5..|0"' in text  # a gRPC failure over HTTP 503 counts once


def test_no_baseline_means_no_edge_view() -> None:
    text = promql.sli_query(AVAILABILITY, ["new-a"], [], "30s")
    assert "edge_old_to_new" not in text


def test_latency_bucket_matches_either_float_spelling() -> None:
    assert promql.le_matcher(250) == ("le", "=~", "250|250\\\\.0")
    assert promql.le_matcher(0.5) == ("le", "=", "0.5")


def test_custom_placeholders_are_filled() -> None:
    text = promql.sli_query(CUSTOM, ["b"], ["a"], "42s")
    assert '=~"a|b"' in text and "[42s]" in text and "{{" not in text


def test_window_range_is_whole_seconds_at_least_one() -> None:
    assert [window_range(s) for s in (0.2, 9.9, 300.0)] == ["1s", "9s", "300s"]


def series(ns: str, kind: str, value: str, view: str = "inbound") -> dict[str, object]:
    return {
        "metric": {"destination_workload_namespace": ns, "kind": kind, "view": view},
        "value": [0, value],
    }


def test_parse_counts_missing_bad_as_zero_but_missing_total_as_no_data() -> None:
    errors: list[str] = []
    w = parse_sli(
        AVAILABILITY,
        "since_warmup",
        30,
        [series("a", "total", "100"), series("c", "bad", "3")],
        ["a", "b", "c"],
        errors,
    )
    assert w.inbound["a"].bad == 0 and w.inbound["a"].total == 100
    assert "b" not in w.inbound and "c" not in w.inbound
    assert sum("no data" in e for e in errors) == 2


def test_parse_reports_nan() -> None:
    errors: list[str] = []
    parse_sli(AVAILABILITY, "short", 5, [series("a", "total", "NaN")], ["a"], errors)
    assert any("nan" in e.lower() for e in errors)


def test_parse_latency_bad_is_total_minus_good() -> None:
    errors: list[str] = []
    w = parse_sli(
        LATENCY, "short", 5, [series("a", "total", "100"), series("a", "good", "90")], ["a"], errors
    )
    assert (w.inbound["a"].bad, w.inbound["a"].total) == (10, 100)
    assert errors == []
