"""Generated rules: promtool accepts them and its unit tests see the alerts fire."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from istio_upgrade.cli.slo import slo
from istio_upgrade.models.slo import BurnRateAlert, SLOSpec
from istio_upgrade.slo.rules import alert_name, dump_yaml, render_crd, render_rules
from istio_upgrade.slo.sloth import load_slos

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("slo-*.yaml"))
RULE_TESTS = ROOT / "tests" / "rules"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_promtool_accepts_rules_of_every_example(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    out.write_text(dump_yaml(render_rules(load_slos(example))))
    run = promtool("check", "rules", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alert_table(tmp_path: Path) -> None:
    slos = load_slos(ROOT / "docs" / "examples" / "slo-mesh.yaml")
    (tmp_path / "mesh.rules.yaml").write_text(dump_yaml(render_rules(slos)))
    tests = sorted(RULE_TESTS.glob("*.test.yaml"))
    assert tests, "no promtool tests found"
    for test in tests:
        shutil.copy(test, tmp_path / test.name)
    run = promtool("test", "rules", *(t.name for t in tests), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_unit_tests_fail_when_page_threshold_is_wrong(tmp_path: Path) -> None:
    """The same tests catch a generator that pages too late (20x instead of 14.4x)."""
    slos = load_slos(ROOT / "docs" / "examples" / "slo-mesh.yaml")
    broken = [
        s.model_copy(
            update={
                "alerts": [
                    BurnRateAlert(
                        severity="page", burn_rate=20, long_window="1h", short_window="5m"
                    ),
                    *s.alerts[1:],
                ]
            }
        )
        for s in slos
    ]
    (tmp_path / "mesh.rules.yaml").write_text(dump_yaml(render_rules(broken)))
    shutil.copy(RULE_TESTS / "availability.test.yaml", tmp_path / "availability.test.yaml")
    run = promtool("test", "rules", "availability.test.yaml", cwd=tmp_path)
    assert run.returncode != 0


def test_every_window_of_the_table_is_recorded() -> None:
    doc = render_rules([SLOSpec(name="availability")])
    records = [r["record"] for r in doc["groups"][0]["rules"]]
    assert records == [
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ]


def test_alert_rows_follow_the_workbook() -> None:
    doc = render_rules([SLOSpec(name="availability")])
    alerts = {r["alert"]: r for r in doc["groups"][2]["rules"]}
    page = alerts["AvailabilityErrorBudgetBurnPage"]["expr"]
    ticket = alerts["AvailabilityErrorBudgetBurnTicket"]["expr"]
    assert 'ratio_rate1h{slo="availability"} > (14.4 * 0.001)' in page
    assert 'ratio_rate5m{slo="availability"} > (14.4 * 0.001)' in page
    assert 'ratio_rate6h{slo="availability"} > (6 * 0.001)' in page
    assert 'ratio_rate30m{slo="availability"} > (6 * 0.001)' in page
    assert 'ratio_rate1d{slo="availability"} > (3 * 0.001)' in ticket
    assert 'ratio_rate3d{slo="availability"} > (1 * 0.001)' in ticket


def test_custom_window_is_recorded_too() -> None:
    alerts = [BurnRateAlert(severity="page", burn_rate=10, long_window="90m", short_window="7m")]
    doc = render_rules([SLOSpec(name="a", alerts=alerts)])
    records = [r["record"] for r in doc["groups"][0]["rules"]]
    assert "slo:sli_error:ratio_rate90m" in records and "slo:sli_error:ratio_rate7m" in records
    assert [r["alert"] for r in doc["groups"][2]["rules"]] == ["AErrorBudgetBurnPage"]


def test_alert_names() -> None:
    assert alert_name(SLOSpec(name="checkout-latency"), "page") == (
        "CheckoutLatencyErrorBudgetBurnPage"
    )


def test_crd_wraps_the_same_groups() -> None:
    slos = [SLOSpec(name="availability")]
    crd = render_crd(slos, "slos", "monitoring")
    assert (crd["apiVersion"], crd["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert crd["metadata"]["namespace"] == "monitoring"
    assert crd["spec"] == render_rules(slos)


def test_cli_rules_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    result = CliRunner().invoke(
        slo,
        [
            "rules",
            "-f",
            str(ROOT / "docs/examples/slo-mesh.yaml"),
            "--format",
            "crd",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["kind"] == "PrometheusRule"
    assert len(doc["spec"]["groups"]) == 6


def test_cli_rules_reports_bad_input_with_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "slo.yaml"
    bad.write_text("slos:\n  - name: a\n    objective: 1.0\n")
    result = CliRunner().invoke(slo, ["rules", "-f", str(bad)])
    assert result.exit_code == 2
    assert "slos[0]: objective" in result.output
    assert "use e.g. 0.999" in result.output


def test_cli_check_is_inconclusive_when_prometheus_is_down() -> None:
    result = CliRunner().invoke(
        slo,
        [
            "check",
            "-f",
            str(ROOT / "docs/examples/slo-mesh.yaml"),
            "--prometheus",
            "http://127.0.0.1:9",
            "--namespaces",
            "a",
            "--window",
            "10s",
        ],
    )
    assert result.exit_code == 8, result.output
    assert "INCONCLUSIVE" in result.output
    assert "unreachable" in result.output


def test_cli_check_rejects_a_bad_window() -> None:
    result = CliRunner().invoke(
        slo,
        [
            "check",
            "-f",
            str(ROOT / "docs/examples/slo-mesh.yaml"),
            "--prometheus",
            "http://127.0.0.1:9",
            "--namespaces",
            "a",
            "--window",
            "five minutes",
        ],
    )
    assert result.exit_code == 2
    assert "--window" in result.output
