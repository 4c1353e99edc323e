"""The ``istio-upgrade`` command without servers: spec errors, schema, exit codes, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.main import cli
from istio_upgrade.cli.specs import EXAMPLE_YAML, example_spec, spec_schema
from istio_upgrade.models import UpgradeSpec

# A port nothing listens on: connecting fails at once with "connection refused".
UNREACHABLE = "127.0.0.1:1"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_help_documents_every_exit_code() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for exit_code in ExitCode:
        assert f"  {int(exit_code)}  " in out, f"exit code {exit_code.name} undocumented"


def test_operations_doc_lists_every_exit_code() -> None:
    """docs/operations.md holds the one table of exit codes; it must not drift from the enum."""
    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    table = doc[doc.index("## Exit codes") :]
    for exit_code in ExitCode:
        assert f"\n| {int(exit_code)} | " in table, f"exit code {exit_code.name} undocumented"


def test_extend_soak_beyond_a_week_is_a_usage_error() -> None:
    code, _, _ = invoke("extend-soak", "istio-upgrade.prod.1-31-0", "--seconds", "1e9")
    assert code == ExitCode.USAGE


def test_sandbox_scenarios_lists_the_shipped_ones() -> None:
    code, out, _ = invoke("sandbox", "scenarios")
    assert code == 0
    assert {"demo", "bad-canary", "flaky-api", "large"} <= set(out.split())


def test_every_command_is_registered() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for name in (
        "start", "plan", "status", "watch", "pause", "resume", "approve", "abort",
        "extend-soak", "list", "schema", "worker", "sandbox", "demo",
    ):  # fmt: skip
        assert f"\n  {name} " in out, name


def test_schema_is_the_upgrade_spec_json_schema() -> None:
    code, out, _ = invoke("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema == json.loads(json.dumps(spec_schema()))
    assert set(schema["required"]) == {"cluster", "target"}
    assert schema["additionalProperties"] is False
    # The attached example validates against the model it documents.
    UpgradeSpec.model_validate(schema["examples"][0])


def test_schema_example_is_a_valid_spec() -> None:
    code, out, _ = invoke("schema", "--example")
    assert code == 0
    assert out == EXAMPLE_YAML
    spec = UpgradeSpec.model_validate(yaml.safe_load(out))
    assert spec == example_spec()
    assert spec.target_revision == "1-31-0"
    assert spec.cluster.name == "prod"


@pytest.mark.parametrize("command", ["start", "plan"])
def test_invalid_spec_prints_field_lines_and_exits_2(tmp_path: Path, command: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "cluster: {name: Prod_1}\n"
        "target: {version: '1.24'}\n"
        "migration: {max_batch_size: 0, batchez: []}\n"
    )
    code, out, err = invoke("--address", UNREACHABLE, command, "-f", str(spec))
    assert code == ExitCode.USAGE
    assert out == ""
    lines = err.strip().splitlines()
    assert all(line.startswith(f"{spec}: ") for line in lines)
    fields = sorted(line.removeprefix(f"{spec}: ").split(":", 1)[0] for line in lines)
    assert fields == [
        "cluster.name",
        "migration.batchez",
        "migration.max_batch_size",
        "target.version",
    ]
    assert "write it like 1.31.0" in err


def test_spec_from_stdin_is_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--address", UNREACHABLE, "start", "-f", "-"], input="cluster: [\n"
    )
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("-: (file): not valid YAML")


def test_missing_spec_file_exits_2() -> None:
    code, _, err = invoke("start", "-f", "/nonexistent/spec.yaml")
    assert code == ExitCode.USAGE
    assert "cannot read" in err


def test_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["status", "--colour"])
    assert result.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    "args",
    [
        ["status", "istio-upgrade.prod.1-31-0"],
        ["approve", "istio-upgrade.prod.1-31-0", "-m", "looks good"],
        ["list"],
    ],
)
def test_unreachable_temporal_exits_6_naming_the_address_option(args: list[str]) -> None:
    code, out, err = invoke("--address", UNREACHABLE, *args)
    assert code == ExitCode.UNAVAILABLE
    assert out == ""
    assert err.startswith("error: ")
    assert "TEMPORAL_ADDRESS" in err


def test_valid_spec_reaches_temporal(tmp_path: Path) -> None:
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps(example_spec().model_dump(mode="json")))
    code, _, err = invoke("--address", UNREACHABLE, "start", "-f", str(spec), "-o", "json")
    # Valid input gets past validation and fails only at the (absent) server.
    assert code == ExitCode.UNAVAILABLE, err


def test_address_comes_from_the_environment() -> None:
    result = CliRunner(env={"TEMPORAL_ADDRESS": UNREACHABLE}).invoke(cli, ["list"])
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert UNREACHABLE in result.stderr


def test_worker_without_temporal_exits_6() -> None:
    result = CliRunner(env={"TEMPORAL_ADDRESS": UNREACHABLE}).invoke(cli, ["worker"])
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "TEMPORAL_ADDRESS" in result.stderr


def test_sandbox_up_with_unknown_scenario_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["sandbox", "up", "--scenario", "no-such", "--kubeconfig", str(tmp_path / "kc")]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "no-such" in result.stderr
    assert not (tmp_path / "kc").exists()


def test_unreadable_tls_file_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "client.pem"
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(missing))
    code, _, err = invoke("--address", UNREACHABLE, "list")
    assert code == ExitCode.USAGE
    assert f"TEMPORAL_TLS_CERT={missing} cannot be read" in err
    assert "Traceback" not in err
