"""How ``connect`` resolves its settings: arguments, ``TEMPORAL_*`` variables, profiles, aliases.

No server: the tests inspect the keyword arguments ``connect`` would pass to
``Client.connect`` (:func:`istio_upgrade.client.connect_options`). Every test names its own
config file through ``TEMPORAL_CONFIG_FILE`` so a ``~/.config/temporalio/temporal.toml`` on
the machine cannot leak in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from istio_upgrade.client import ConnectionConfigError, connect_options

PROFILES = """
[profile.default]
address = "file-default:7233"
namespace = "file-ns"

[profile.prod]
address = "prod.tmprl.cloud:7233"
namespace = "prod.abc12"
api_key = "file-key"

[profile.mtls]
address = "mtls:7233"
[profile.mtls.tls]
server_name = "frontend.internal"
client_cert_path = "CERT_PATH"
client_key_path = "KEY_PATH"
server_ca_cert_data = "CA FROM FILE"
"""


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name in ("cert", "key", "ca", "other"):
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(f"{name.upper()} PEM".encode())
    return paths


@pytest.fixture
def config_file(tmp_path: Path, pems: dict[str, Path]) -> Path:
    path = tmp_path / "temporal.toml"
    text = PROFILES.replace("CERT_PATH", str(pems["cert"])).replace("KEY_PATH", str(pems["key"]))
    path.write_text(text)
    return path


@pytest.fixture
def no_file(tmp_path: Path) -> dict[str, str]:
    """An environment whose config file is empty: only variables and arguments count."""
    path = tmp_path / "empty.toml"
    path.write_text("")
    return {"TEMPORAL_CONFIG_FILE": str(path)}


def options(env: dict[str, str], *args: Any, **kwargs: Any) -> dict[str, Any]:
    return connect_options(*args, environ=env, **kwargs)


def test_defaults_without_any_setting(no_file: dict[str, str]) -> None:
    opts = options(no_file)
    assert opts == {
        "target_host": "localhost:7233",
        "namespace": "default",
        "tls": False,
        "data_converter": pydantic_data_converter,
    }


def test_standard_variables(no_file: dict[str, str]) -> None:
    env = no_file | {
        "TEMPORAL_ADDRESS": "env:7233",
        "TEMPORAL_NAMESPACE": "env-ns",
        "TEMPORAL_API_KEY": "env-key",
        "TEMPORAL_GRPC_META_X_TENANT": "blue",
    }
    opts = options(env)
    assert opts["target_host"] == "env:7233"
    assert opts["namespace"] == "env-ns"
    assert opts["api_key"] == "env-key"
    assert opts["tls"] is True, "an API key implies TLS"
    assert opts["rpc_metadata"] == {"x-tenant": "blue"}
    assert opts["data_converter"] is pydantic_data_converter


def test_default_profile_of_the_config_file(config_file: Path) -> None:
    opts = options({"TEMPORAL_CONFIG_FILE": str(config_file)})
    assert (opts["target_host"], opts["namespace"]) == ("file-default:7233", "file-ns")


def test_profile_from_the_environment(config_file: Path) -> None:
    opts = options({"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "prod"})
    assert opts["target_host"] == "prod.tmprl.cloud:7233"
    assert opts["api_key"] == "file-key"
    assert opts["tls"] is True


def test_profile_argument_beats_temporal_profile(config_file: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "default"}
    assert options(env, profile="prod")["namespace"] == "prod.abc12"


def test_variables_beat_the_profile_and_arguments_beat_both(config_file: Path) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_PROFILE": "prod",
        "TEMPORAL_NAMESPACE": "env-ns",
        "TEMPORAL_API_KEY": "env-key",
    }
    opts = options(env)
    assert (opts["target_host"], opts["namespace"], opts["api_key"]) == (
        "prod.tmprl.cloud:7233",
        "env-ns",
        "env-key",
    )
    opts = options(env, "arg:7233", "arg-ns", "arg-key", False)
    assert (opts["target_host"], opts["namespace"], opts["api_key"], opts["tls"]) == (
        "arg:7233",
        "arg-ns",
        "arg-key",
        False,
    )


def test_empty_variables_count_as_unset(config_file: Path) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_PROFILE": "prod",
        "TEMPORAL_API_KEY": "",
        "TEMPORAL_ADDRESS": "",
        "TEMPORAL_TLS": "",
    }
    opts = options(env)
    assert (opts["target_host"], opts["api_key"], opts["tls"]) == (
        "prod.tmprl.cloud:7233",
        "file-key",
        True,
    )


def test_profile_tls_table(config_file: Path) -> None:
    opts = options({"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "mtls"})
    assert opts["tls"] == TLSConfig(
        server_root_ca_cert=b"CA FROM FILE",
        domain="frontend.internal",
        client_cert=b"CERT PEM",
        client_private_key=b"KEY PEM",
    )


def test_old_tls_file_variables_are_aliases(no_file: dict[str, str], pems: dict[str, Path]) -> None:
    env = no_file | {
        "TEMPORAL_TLS_CERT": str(pems["cert"]),
        "TEMPORAL_TLS_KEY": str(pems["key"]),
        "TEMPORAL_TLS_CA": str(pems["ca"]),
    }
    assert options(env)["tls"] == TLSConfig(
        server_root_ca_cert=b"CA PEM", client_cert=b"CERT PEM", client_private_key=b"KEY PEM"
    )


def test_alias_ca_alone_is_tls_with_that_ca(no_file: dict[str, str], pems: dict[str, Path]) -> None:
    assert options(no_file | {"TEMPORAL_TLS_CA": str(pems["ca"])})["tls"] == TLSConfig(
        server_root_ca_cert=b"CA PEM"
    )


def test_standard_names_beat_aliases(no_file: dict[str, str], pems: dict[str, Path]) -> None:
    env = no_file | {
        "TEMPORAL_TLS_CERT": str(pems["other"]),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pems["cert"]),
        "TEMPORAL_TLS_KEY": str(pems["other"]),
        "TEMPORAL_TLS_CLIENT_KEY_DATA": "KEY INLINE",
        "TEMPORAL_TLS_SERVER_NAME": "sni.example",
    }
    assert options(env)["tls"] == TLSConfig(
        domain="sni.example", client_cert=b"CERT PEM", client_private_key=b"KEY INLINE"
    )


def test_aliases_beat_the_profile(config_file: Path, pems: dict[str, Path]) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_PROFILE": "mtls",
        "TEMPORAL_TLS_CERT": str(pems["other"]),
    }
    tls = options(env)["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key) == (b"OTHER PEM", b"KEY PEM")
    assert (tls.server_root_ca_cert, tls.domain) == (b"CA FROM FILE", "frontend.internal")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(value, True) for value in ("true", "TRUE", "1", "yes", "on")],
        *[(value, False) for value in ("false", "0", "no", "off")],
    ],
)
def test_temporal_tls_flag(no_file: dict[str, str], value: str, expected: bool) -> None:
    assert options(no_file | {"TEMPORAL_TLS": value})["tls"] is expected


def test_temporal_tls_that_is_not_a_boolean_is_refused(no_file: dict[str, str]) -> None:
    with pytest.raises(ConnectionConfigError, match="TEMPORAL_TLS=maybe is not a boolean"):
        options(no_file | {"TEMPORAL_TLS": "maybe"})


def test_tls_disabled_explicitly_beats_the_api_key(no_file: dict[str, str]) -> None:
    env = no_file | {"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "false"}
    assert options(env)["tls"] is False
    assert options(env, tls=True)["tls"] is True


def test_tls_argument_false_beats_certificates(
    no_file: dict[str, str], pems: dict[str, Path]
) -> None:
    env = no_file | {"TEMPORAL_TLS_CERT": str(pems["cert"]), "TEMPORAL_TLS_KEY": str(pems["key"])}
    assert options(env, tls=False)["tls"] is False


def test_tls_argument_true_keeps_the_certificates(
    no_file: dict[str, str], pems: dict[str, Path]
) -> None:
    env = no_file | {"TEMPORAL_TLS": "false", "TEMPORAL_TLS_CA": str(pems["ca"])}
    assert options(env)["tls"] is False
    assert options(env, tls=True)["tls"] == TLSConfig(server_root_ca_cert=b"CA PEM")


def test_unreadable_alias_file_names_the_alias(no_file: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "client.pem"
    with pytest.raises(
        ConnectionConfigError, match=re.escape(f"TEMPORAL_TLS_CERT={missing} cannot be read")
    ):
        options(no_file | {"TEMPORAL_TLS_CERT": str(missing)})


def test_unreadable_standard_file_names_the_variable(
    no_file: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(
        ConnectionConfigError,
        match=re.escape(f"TEMPORAL_TLS_SERVER_CA_CERT_PATH={missing} cannot be read"),
    ):
        options(no_file | {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(missing)})


def test_unreadable_profile_file_names_the_profile_key(
    config_file: Path, pems: dict[str, Path]
) -> None:
    pems["key"].unlink()
    with pytest.raises(
        ConnectionConfigError, match=r"tls\.client_key_path .* of the Temporal profile"
    ):
        options({"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "mtls"})


def test_certificate_without_key_is_refused(no_file: dict[str, str], pems: dict[str, Path]) -> None:
    with pytest.raises(ConnectionConfigError, match="certificate is set without its key"):
        options(no_file | {"TEMPORAL_TLS_CERT": str(pems["cert"])})


def test_missing_profile_is_refused(config_file: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="Profile 'staging' not found"):
        options({"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "staging"})


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(
        ConnectionConfigError, match=re.escape(f"TEMPORAL_CONFIG_FILE={missing} is not")
    ):
        options({"TEMPORAL_CONFIG_FILE": str(missing)})


def test_broken_config_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.default\n")
    with pytest.raises(ConnectionConfigError, match="TOML parse error"):
        options({"TEMPORAL_CONFIG_FILE": str(broken)})
