"""Sloth prometheus/v1 files and our own SLO files load into SLOSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from istio_upgrade.models.slo import AvailabilitySLI, CustomSLI, LatencySLI
from istio_upgrade.slo.sloth import SLOFileError, load_slos, parse_slos

ROOT = Path(__file__).resolve().parents[2]


def test_sloth_example_maps_objective_sli_alerts_and_labels() -> None:
    slos = load_slos(ROOT / "docs/examples/slo-sloth.yaml", period="28d")
    first, second = slos
    assert first.name == "requests-availability"
    assert first.objective == pytest.approx(0.999)
    assert first.period == "28d"
    assert isinstance(first.sli, AvailabilitySLI)
    assert {a.severity for a in first.alerts} == {"page"}
    assert first.labels == {"owner": "platform", "service": "mesh"}
    assert isinstance(second.sli, CustomSLI)
    assert "{{window}}" in second.sli.error_query
    assert "{{namespaces}}" in second.sli.total_query
    assert {a.severity for a in second.alerts} == {"page", "ticket"}


def test_our_examples_load() -> None:
    mesh = load_slos(ROOT / "docs/examples/slo-mesh.yaml")
    assert [s.name for s in mesh] == ["availability", "latency"]
    assert isinstance(mesh[1].sli, LatencySLI)
    assert isinstance(load_slos(ROOT / "docs/examples/slo-custom.yaml")[0].sli, CustomSLI)


def test_upgrade_spec_gate_section_is_accepted() -> None:
    slos = parse_slos({"gate": {"slos": [{"name": "availability", "objective": 0.99}]}})
    assert slos[0].objective == 0.99


def sloth(sli: dict[str, object], objective: object = 99.9) -> dict[str, object]:
    return {
        "version": "prometheus/v1",
        "service": "svc",
        "slos": [{"name": "s", "objective": objective, "sli": sli}],
    }


def test_sloth_query_without_namespaces_is_explained() -> None:
    doc = sloth(
        {
            "events": {
                "error_query": "sum(rate(e[{{.window}}]))",
                "total_query": "sum(rate(t[{{.window}}]))",
            }
        }
    )
    with pytest.raises(SLOFileError, match=r"slos\[0\].*lacks \{\{namespaces\}\}"):
        parse_slos(doc)


def test_sloth_raw_ratio_is_refused_with_a_fix() -> None:
    with pytest.raises(SLOFileError, match=r"rewrite it as sli\.events"):
        parse_slos(sloth({"raw": {"error_ratio_query": "x"}}))


def test_sloth_unknown_plugin_is_refused() -> None:
    with pytest.raises(SLOFileError, match=r"plugin.id 'sloth-common/x'"):
        parse_slos(sloth({"plugin": {"id": "sloth-common/x"}}))


def test_sloth_latency_plugin_threshold_is_checked() -> None:
    with pytest.raises(SLOFileError, match="use 250 or 500"):
        parse_slos(sloth({"plugin": {"id": "istio-latency", "options": {"threshold_ms": 300}}}))


def test_sloth_objective_is_a_percentage() -> None:
    with pytest.raises(SLOFileError, match="leaves no error budget"):
        parse_slos(sloth({"plugin": {"id": "istio-availability"}}, objective=100))
    with pytest.raises(SLOFileError, match="percentage"):
        parse_slos(sloth({"plugin": {"id": "istio-availability"}}, objective="high"))


def test_unknown_version_and_empty_files() -> None:
    with pytest.raises(SLOFileError, match="prometheus/v1"):
        parse_slos({"version": "openslo/v1"})
    with pytest.raises(SLOFileError, match="list at least one SLO"):
        parse_slos({"slos": []})
    with pytest.raises(SLOFileError, match="must be a mapping"):
        parse_slos(["a"])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(SLOFileError, match="a repeats"):
        parse_slos({"slos": [{"name": "a"}, {"name": "a"}]})


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SLOFileError, match="cannot read"):
        load_slos(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos: [\n")
    with pytest.raises(SLOFileError, match="not valid YAML"):
        load_slos(bad)
