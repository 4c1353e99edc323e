"""A whole upgrade whose gate asks a Prometheus behind basic auth and TLS, and the proof that
none of the secrets it used is in the workflow's history.

The spec names where the worker reads them (an environment variable, a file, a CA bundle);
the history holds those names and nothing more: the scan of recorded histories
(``tests/replay/test_history_secrets.py``) finds nothing, and neither the password nor the
secret header's value appears anywhere, payloads decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv.prometheus_web import WebConfig, make_server_certificate
from istio_upgrade.models import UpgradeResult
from tests.integration.upgrade_stack import fast_spec, record_history, upgrade_stack
from tests.replay.test_history_secrets import scan_document

pytestmark = pytest.mark.slow

USER = "istio-upgrade"


def _decoded(data: str) -> str:
    try:
        return base64.b64decode(data).decode(errors="replace")
    except (binascii.Error, ValueError):
        return ""


def texts(value: Any) -> Iterator[str]:
    """Every string of a history's JSON, with each payload's base64 ``data`` decoded too."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "data" and isinstance(item, str):
                yield _decoded(item)
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)
    elif isinstance(value, str):
        yield value


async def test_upgrade_through_authenticated_prometheus_keeps_secrets_out_of_history(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = f"pw-{secrets.token_urlsafe(18)}"
    api_key = f"key-{secrets.token_urlsafe(18)}"
    monkeypatch.setenv("TEST_GATE_PROMETHEUS_PASSWORD", password)
    (tmp_path / "api-key").write_text(api_key + "\n")
    cert = make_server_certificate(tmp_path / "tls")
    web = WebConfig(users={USER: password}, tls=cert)
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, web=web
    ) as stack:
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        auth = {
            "basic_auth": {"username": USER, "password_env": "TEST_GATE_PROMETHEUS_PASSWORD"},
            "http_headers": {
                "X-Scope-OrgID": "demo",
                "X-Api-Key": {"file": str(tmp_path / "api-key")},
            },
            "tls_config": {"ca_file": str(cert.ca_file)},
        }
        spec = fast_spec(stack.prometheus.url, gate={"prometheus_auth": auth})
        assert spec.prometheus_url.startswith("https://")
        handle = await stack.start(spec)
        result: UpgradeResult = await handle.result()
        await record_history(handle, "prometheus-auth-6")
        assert result.outcome == "SUCCEEDED", result.summary
        assert result.old_revision_removed, result.warnings
        progress = await handle.query("progress")
        history = json.loads((await handle.fetch_history()).to_json())

    assert all(b["status"] == "passed" for b in progress["batches"]), progress["batches"]
    every = list(texts(history))
    joined = "\n".join(every)
    assert password not in joined and api_key not in joined
    # What the history does hold: the references, for an SRE to see where the secret lives.
    assert "TEST_GATE_PROMETHEUS_PASSWORD" in joined
    assert str(cert.ca_file) in joined
    assert "prometheus-auth" in joined  # the patch marker: the new code path ran
    findings = scan_document("auth-upgrade", history)
    assert not findings, "\n".join(str(f) for f in findings)
