"""SLO inputs: the ``SLOSpec`` model, an upgrade spec's ``gate.slos`` and the ``istio-upgrade
slo`` commands (SLO files, ours and Sloth's, and ``slo check`` options) name the field and
the fix; a bad SLO file makes ``slo rules`` and ``slo check`` exit 2 before any query."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import ValidationError

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.main import cli
from istio_upgrade.models import UpgradeSpec
from istio_upgrade.models.slo import SLOSpec
from tests.bad_input.conftest import assert_explains
from tests.bad_input.corpus import SLO_CASES, Case, param, spec

pytestmark = pytest.mark.bad_input

NOWHERE = "http://127.0.0.1:9"
"""A Prometheus nothing listens on: a command that got past its input would say unreachable."""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def write(tmp_path: Path, doc: Any, name: str = "slos.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


@pytest.mark.parametrize("case", [param(c) for c in SLO_CASES])
def test_the_slo_model_refuses(case: Case) -> None:
    with pytest.raises(ValidationError) as info:
        SLOSpec.model_validate(case.doc)
    assert_explains(str(info.value), case)


@pytest.mark.parametrize("case", [param(c) for c in SLO_CASES])
def test_an_upgrade_spec_names_the_slo_field(case: Case) -> None:
    inside = dataclasses.replace(case, fields=tuple(f"gate.slos[0].{f}" for f in case.fields))
    with pytest.raises(ValidationError) as info:
        UpgradeSpec.model_validate(spec(("gate.slos", [case.doc])))
    assert_explains(str(info.value), inside)


@pytest.mark.parametrize("command", ["rules", "check"])
@pytest.mark.parametrize("case", [param(c) for c in SLO_CASES])
def test_slo_commands_refuse_the_file(tmp_path: Path, case: Case, command: str) -> None:
    path = write(tmp_path, {"slos": [case.doc]})
    args = ["slo", command, "-f", str(path)]
    if command == "check":
        args += ["--prometheus", NOWHERE, "--namespaces", "frontend"]
    result = invoke(*args)
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: slos[0]"), result.stderr
    assert_explains(result.stderr, case)


SLOTH = {"version": "prometheus/v1", "service": "shop"}
SLOTH_EVENTS = {
    "events": {
        "error_query": 'sum(rate(http_requests_total{namespace=~"{{.namespaces}}",code=~"5.."}'
        "[{{.window}}]))",
        "total_query": 'sum(rate(http_requests_total{namespace=~"{{.namespaces}}"}[{{.window}}]))',
    }
}

FILES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("root-list", [{"name": "a"}], ("mapping",)),
    ("no-slos", {"slos": []}, ("slos:", "at least one SLO")),
    ("unknown-version", {"version": "prometheus/v2", "slos": []}, ("version", "prometheus/v1")),
    ("duplicate-names", {"slos": [{"name": "a"}, {"name": "a"}]}, ("slos:", "unique")),
    ("sloth-percent-string",
     {**SLOTH, "slos": [{"name": "a", "objective": "99.9%", "sli": SLOTH_EVENTS}]},
     ("slos[0].objective", "percentage such as 99.9")),
    ("sloth-objective-100",
     {**SLOTH, "slos": [{"name": "a", "objective": 100, "sli": SLOTH_EVENTS}]},
     ("slos[0]", "objective", "no error budget")),
    ("sloth-plugin", {**SLOTH, "slos": [{"name": "a", "objective": 99.9,
                                         "sli": {"plugin": {"id": "sloth-common/x"}}}]},
     ("slos[0].sli.plugin.id", "istio-availability")),
    ("sloth-raw", {**SLOTH, "slos": [{"name": "a", "objective": 99.9,
                                      "sli": {"raw": {"error_ratio_query": "x"}}}]},
     ("slos[0].sli.raw", "sli.events")),
    ("sloth-no-sli", {**SLOTH, "slos": [{"name": "a", "objective": 99.9}]},
     ("slos[0].sli", "events, plugin or raw")),
    ("sloth-no-namespaces",
     {**SLOTH, "slos": [{"name": "a", "objective": 99.9,
                         "sli": {"events": {"error_query": "sum(rate(x[{{.window}}]))",
                                            "total_query": "sum(rate(y[{{.window}}]))"}}}]},
     ("slos[0]", "sli.error_query", "{{namespaces}}")),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "needles"), [pytest.param(d, n, id=i) for i, d, n in FILES])
def test_slo_files_name_the_field(tmp_path: Path, doc: Any, needles: tuple[str, ...]) -> None:
    result = invoke("slo", "rules", "-f", str(write(tmp_path, doc)))
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_an_unreadable_slo_file_exits_2(tmp_path: Path) -> None:
    result = invoke("slo", "rules", "-f", str(tmp_path / "absent.yaml"))
    assert result.exit_code == ExitCode.USAGE
    assert "cannot read" in result.stderr


OPTIONS: list[tuple[list[str], tuple[str, ...]]] = [
    (["--window", "-5m"], ("--window", "not a duration")),
    (["--window", "0s"], ("--window", "shorter than 1s")),
    (["--window", "1e308"], ("--window", "not a duration")),
    (["--short-window", "five minutes"], ("--short-window", "not a duration")),
    (["--namespaces", ""], ("--namespaces", "at least one namespace")),
    (["--namespaces", " , "], ("--namespaces", "at least one namespace")),
]


def _check(tmp_path: Path, extra: list[str]) -> Result:
    path = write(tmp_path, {"slos": [{"name": "availability"}]})
    base = {"--prometheus": NOWHERE, "--namespaces": "frontend"}
    for flag in extra[::2]:
        base.pop(flag, None)
    args = [a for flag, value in base.items() for a in (flag, value)]
    return invoke("slo", "check", "-f", str(path), *args, *extra)


@pytest.mark.parametrize(
    ("extra", "needles"), [pytest.param(e, n, id=" ".join(e) or "empty") for e, n in OPTIONS]
)
def test_slo_check_options_name_the_option(
    tmp_path: Path, extra: list[str], needles: tuple[str, ...]
) -> None:
    result = _check(tmp_path, extra)
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr, result.exception)
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("url", ["ftp://prom:9090", "prom:9090"])
def test_slo_check_refuses_a_url_that_is_not_http(tmp_path: Path, url: str) -> None:
    result = _check(tmp_path, ["--prometheus", url])
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr, result.exception)
    assert "--prometheus" in result.stderr


def test_slo_check_refuses_a_namespace_that_is_promql(tmp_path: Path) -> None:
    result = _check(tmp_path, ["--namespaces", 'a"} or vector(1) or {x="'])
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr, result.exception)
    assert "--namespaces" in result.stderr and "DNS-1123" in result.stderr


@pytest.mark.parametrize(
    ("auth", "needle"),
    [
        ({"authorization": {"credentials_file": "token"}}, "must be an absolute path"),
        ({"http_headers": {"Authorization": "Bearer abc-secret-123"}}, "must not be a plain"),
        ({"bearer_token": "abc-secret-123"}, "unknown field"),
    ],
)
def test_slo_check_refuses_a_bad_prometheus_auth_file_before_any_query(
    tmp_path: Path, auth: dict[str, Any], needle: str
) -> None:
    path = write(tmp_path, auth, "auth.yaml")
    result = _check(tmp_path, ["--prometheus-auth", str(path)])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--prometheus-auth" in result.stderr and needle in result.stderr
    assert "abc-secret-123" not in result.output
    assert "unreachable" not in result.output


def test_slo_check_without_the_secret_is_inconclusive_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    path = write(tmp_path, {"authorization": {"credentials_file": str(missing)}}, "auth.yaml")
    result = _check(tmp_path, ["--prometheus-auth", str(path)])
    assert result.exit_code == ExitCode.WAITING, result.output
    assert f"cannot read file {missing}" in " ".join(result.output.split())
