"""``prometheus_auth``: references validated in the spec, resolved on the worker, never echoed."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from istio_upgrade.activities.prometheus_http import (
    CredentialError,
    client_options,
    read_secret,
    redact,
)
from istio_upgrade.models.fleet import FleetSpec
from istio_upgrade.models.prometheus_auth import PrometheusAuth, SecretRef
from istio_upgrade.models.spec import UpgradeSpec

SECRET = "s3cr3t-Value-0123456789"


def spec(gate_auth: Any = None, cluster: dict[str, Any] | None = None) -> UpgradeSpec:
    gate: dict[str, Any] = {"prometheus_url": "https://prom.example:9091"}
    if gate_auth is not None:
        gate["prometheus_auth"] = gate_auth
    return UpgradeSpec.model_validate(
        {"cluster": {"name": "c", **(cluster or {})}, "target": {"version": "1.31.0"}, "gate": gate}
    )


def refusal(auth: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        spec(auth)
    return str(caught.value)


def test_every_reference_kind_is_accepted_and_described_without_values() -> None:
    parsed = spec(
        {
            "authorization": {"credentials_file": "/var/run/secrets/token"},
            "http_headers": {"X-Scope-OrgID": "tenant-a", "X-Api-Key": {"env": "PROM_KEY"}},
            "tls_config": {"ca_file": "/etc/prom/ca.crt"},
        }
    )
    auth = parsed.prometheus_auth
    assert auth is not None and auth.authorization is not None
    assert auth.authorization.type == "Bearer"
    assert auth.describe() == (
        "Bearer from file /var/run/secrets/token, X-Scope-OrgID, X-Api-Key from environment "
        "variable PROM_KEY, CA /etc/prom/ca.crt"
    )
    assert spec({"basic_auth": {"username": "gate", "password_env": "P"}}).prometheus_auth


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        ({"authorization": {}}, "give exactly one of credentials_file"),
        (
            {"authorization": {"credentials_file": "/a", "credentials_env": "B"}},
            "give exactly one of credentials_file",
        ),
        ({"basic_auth": {"username": "u"}}, "give exactly one of password_file"),
        ({"basic_auth": {"username": "u:x", "password_env": "P"}}, "without ':'"),
        ({"authorization": {"credentials_file": "token"}}, "must be an absolute path"),
        ({"authorization": {"credentials_env": "1BAD"}}, "environment variable name"),
        ({"authorization": {"type": "Basic", "credentials_env": "T"}}, "use basic_auth"),
        ({"http_headers": {"Bad Name": "x"}}, "is not a valid header name"),
        ({"http_headers": {"X-A:": "x"}}, "is not a valid header name"),
        ({"http_headers": {"Authorization": "Bearer " + SECRET}}, "must not be a plain value"),
        ({"http_headers": {"X-Api-Key": SECRET}}, "looks like it carries a secret"),
        ({"http_headers": {"Cookie": SECRET}}, "looks like it carries a secret"),
        ({"http_headers": {"X-Scope-OrgID": "a\r\nX-Evil: 1"}}, "line break"),
        ({"http_headers": {"Host": "other"}}, "set by the HTTP client itself"),
        ({"http_headers": {"X-A": "1", "x-a": "2"}}, "given twice"),
        ({"http_headers": {"X-A": {"file": "/a", "env": "B"}}}, "exactly one of file"),
        ({"http_headers": {"X-A": {"values": ["a"]}}}, "unknown field"),
        (
            {
                "authorization": {"credentials_env": "T"},
                "basic_auth": {"username": "u", "password_env": "P"},
            },
            "keep one",
        ),
        (
            {"tls_config": {"ca_file": "/ca", "insecure_skip_verify": True}},
            "remove insecure_skip_verify",
        ),
        ({"bearer_token": SECRET}, "unknown field"),
    ],
)
def test_bad_references_are_refused_naming_the_field_and_fix(auth: Any, says: str) -> None:
    message = refusal(auth)
    assert says in message
    assert "prometheus_auth" in message
    assert SECRET not in message, "a refusal must never echo a possible secret"


def test_credentials_in_the_url_point_at_prometheus_auth() -> None:
    with pytest.raises(ValidationError) as caught:
        spec(cluster={"prometheus_url": "https://user:" + SECRET + "@prom:9091"})
    assert "prometheus_auth" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_cluster_overrides_the_gate_and_empty_means_none() -> None:
    gate = {"authorization": {"credentials_env": "GATE_TOKEN"}}
    inherited = spec(gate, cluster={"prometheus_url": "https://other:9091"}).prometheus_auth
    assert inherited is not None and inherited.authorization is not None
    own = spec(gate, cluster={"prometheus_auth": {"http_headers": {"X-Scope-OrgID": "t"}}})
    assert own.prometheus_auth is not None and own.prometheus_auth.authorization is None
    none = spec(gate, cluster={"prometheus_auth": {}}).prometheus_auth
    assert none is not None and none.describe() == "no credentials"


def test_a_fleet_cluster_carries_its_own_auth_into_its_spec() -> None:
    fleet = FleetSpec.model_validate(
        {
            "name": "f",
            "template": {
                "target": {"version": "1.31.0"},
                "gate": {"prometheus_url": "https://mimir:8080"},
            },
            "clusters": [
                {
                    "name": "eu",
                    "prometheus_auth": {
                        "http_headers": {"X-Scope-OrgID": "eu"},
                        "authorization": {"credentials_file": "/etc/mimir/token"},
                    },
                },
                {"name": "us"},
            ],
            "stages": [{"name": "all", "clusters": ["eu", "us"]}],
        }
    )
    eu = fleet.cluster_spec("eu").prometheus_auth
    assert eu is not None and eu.http_headers == {"X-Scope-OrgID": "eu"}
    assert fleet.cluster_spec("us").prometheus_auth is None


def test_the_schema_documents_the_references() -> None:
    schema = UpgradeSpec.model_json_schema()
    text = str(schema)
    for name in ("credentials_file", "password_env", "insecure_skip_verify", "http_headers"):
        assert name in text


# -- resolution on the worker ---------------------------------------------------------------


def test_secrets_are_read_stripped_from_files_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    monkeypatch.setenv("PROM_PASSWORD", f"  {SECRET}-pw ")
    auth = PrometheusAuth.model_validate(
        {
            "authorization": {"credentials_file": str(token)},
            "http_headers": {"X-Scope-OrgID": "tenant-a", "X-Key": {"env": "PROM_PASSWORD"}},
        }
    )
    options = client_options(auth, "https://prom:9091")
    assert options.headers == {
        "Authorization": f"Bearer {SECRET}",
        "X-Scope-OrgID": "tenant-a",
        "X-Key": f"{SECRET}-pw",
    }
    assert sorted(options.secrets) == sorted([SECRET, f"{SECRET}-pw"])
    basic = PrometheusAuth.model_validate(
        {"basic_auth": {"username": "gate", "password_env": "PROM_PASSWORD"}}
    )
    assert isinstance(client_options(basic, "https://p").auth, httpx.BasicAuth)


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read file"), ("", "is empty"), ("a\nb", "line break"), ("é-token", "ASCII")],
)
def test_unusable_secret_files_name_the_file_never_the_value(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CredentialError) as caught:
        read_secret(SecretRef(file=str(path)), "basic_auth.password")
    message = str(caught.value)
    assert says in message and str(path) in message
    assert "prometheus_auth.basic_auth.password" in message
    if content:
        assert content not in message


def test_a_missing_env_var_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PROM_TOKEN", raising=False)
    with pytest.raises(CredentialError, match="has no environment variable NO_SUCH_PROM_TOKEN"):
        read_secret(SecretRef(env="NO_SUCH_PROM_TOKEN"), "authorization.credentials")


def test_ca_file_replaces_the_system_trust_and_a_bad_one_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    auth = PrometheusAuth.model_validate({"tls_config": {"ca_file": str(bad)}})
    with pytest.raises(CredentialError, match=r"cannot load .*ca\.crt as a PEM CA bundle"):
        client_options(auth, "https://p")
    missing = PrometheusAuth.model_validate({"tls_config": {"ca_file": str(tmp_path / "none")}})
    with pytest.raises(CredentialError, match="mount the CA certificate"):
        client_options(missing, "https://p")


def test_insecure_skip_verify_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    auth = PrometheusAuth.model_validate({"tls_config": {"insecure_skip_verify": True}})
    with caplog.at_level("WARNING"):
        options = client_options(auth, "https://prom:9091")
    assert options.verify is False
    assert "NOT verified" in caplog.text
    assert isinstance(client_options(None, "https://p").verify, bool | ssl.SSLContext)


def test_redact_masks_every_secret() -> None:
    assert redact(f"x {SECRET} y {SECRET}", [SECRET, ""]) == "x *** y ***"


def test_the_documented_examples_are_valid_gates() -> None:
    import re

    import yaml

    from istio_upgrade.models.gate import GateSpec

    doc = (Path(__file__).resolve().parents[2] / "docs" / "slo-gate.md").read_text()
    section = doc.split("## Prometheus behind authentication", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    for block in blocks:
        gate = GateSpec.model_validate(yaml.safe_load(block)["gate"])
        assert gate.prometheus_auth is not None


def test_remove_revision_refuses_a_bad_auth_file_before_connecting(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from istio_upgrade.cli.main import cli

    path = tmp_path / "auth.yaml"
    path.write_text("http_headers: {X-Api-Key: " + SECRET + "}\n")
    result = CliRunner().invoke(
        cli,
        ["--address", "127.0.0.1:1", "remove-revision", "--cluster", "c", "--revision",
         "1-30-3", "--prometheus-url", "https://p:9091", "--prometheus-auth", str(path)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "looks like it carries a secret" in result.output
    assert SECRET not in result.output
