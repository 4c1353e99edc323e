"""Sandbox scenarios: ``parse_scenario`` and ``istio-upgrade sandbox up --scenario FILE`` name
every bad field's path and its fix; an unusable scenario never serves a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from istio_sandbox.scenario import ScenarioError, parse_scenario
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.main import cli
from tests.bad_input.conftest import assert_explains
from tests.bad_input.corpus import BASE_SCENARIO, SCENARIO_CASES, Case, param

pytestmark = pytest.mark.bad_input


def test_the_base_scenario_is_valid() -> None:
    assert parse_scenario(BASE_SCENARIO).name == "bad-input"


@pytest.mark.parametrize("case", [param(c) for c in SCENARIO_CASES])
def test_parse_scenario_refuses(case: Case) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(case.doc, "bad.yaml")
    message = str(info.value)
    assert message.startswith("scenario bad.yaml is invalid:\n"), message
    assert_explains(message, case)


@pytest.mark.parametrize("case", [param(c) for c in SCENARIO_CASES])
def test_sandbox_up_refuses_before_serving(tmp_path: Path, case: Case) -> None:
    # A scenario the parser accepts would serve until interrupted: never start one here.
    with pytest.raises(ScenarioError):
        parse_scenario(case.doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(case.doc, allow_unicode=True, sort_keys=False))
    kubeconfig, ready = tmp_path / "kubeconfig", tmp_path / "ready.json"
    result = CliRunner().invoke(
        cli,
        ["sandbox", "up", "--scenario", str(path), "--kubeconfig", str(kubeconfig),
         "--ready-file", str(ready)],
    )  # fmt: skip
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr)
    assert_explains(result.stderr, case)
    assert not kubeconfig.exists() and not ready.exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- name: x\n", "must be a mapping"),
        ("extends: 7\nname: x\n", "extends"),
    ],
    ids=["not-yaml", "list", "extends-number"],
)
def test_unusable_scenario_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(
        cli, ["sandbox", "up", "--scenario", str(path), "--kubeconfig", str(tmp_path / "kc")]
    )
    assert result.exit_code == ExitCode.USAGE, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert not (tmp_path / "kc").exists()
