"""The gate against Prometheus behind authentication: a real Prometheus started with
``--web.config.file`` (basic auth, TLS from a test CA), and a header-checking proxy in front of
it standing in for Mimir's tenant header and a bearer-token gateway.

Credentials are references resolved by the activity; a wrong or missing one makes the gate
INCONCLUSIVE (never PASS) with a message naming the field, and no message holds a secret.
"""

from __future__ import annotations

import json
import ssl
from base64 import b64encode
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from istio_upgrade.activities.prometheus import measure_gate, probe_prometheus, query_revision_xds
from istio_upgrade.cli.slo_check import check_once
from istio_upgrade.devenv import PrometheusServer
from istio_upgrade.devenv.prometheus_web import (
    ServerCertificate,
    WebConfig,
    make_server_certificate,
)
from istio_upgrade.models.gate import GateMeasurements, GateQuery, GateSpec
from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.workflows.gate import evaluate_gate
from tests.integration.header_proxy import HeaderProxy

pytestmark = pytest.mark.slow

NEW, OLD = "1-31-0", "1-30-3"
USER, PASSWORD = "gate-reader", "pw-Zq81-correct-horse"
TOKEN, ORG = "tok-5f3a9c1e-bearer-value", "tenant-eu-1"
SECRETS = (PASSWORD, TOKEN)
AVAILABILITY = SLOSpec(name="availability", objective=0.999)

SCENARIO = """
name: auth-test
cluster_name: auth
timings: {pod_start_s: 0.1, pod_ready_s: 0.1, istiod_ready_s: 0.2}
revisions:
  - version: 1.30.3
  - version: 1.31.0
namespaces:
  - name: old-a
    labels: {istio.io/rev: 1-30-3}
    workloads:
      - {name: front, rps: 40, calls: [new-a/api]}
  - name: new-a
    labels: {istio.io/rev: 1-31-0}
    workloads:
      - {name: api, rps: 40}
"""


@dataclass
class Env:
    prometheus: PrometheusServer
    cert: ServerCertificate
    secrets: Path
    """Directory of the worker's secret files (as a mounted Secret would be)."""
    proxy: HeaderProxy


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(
    tmp_path_factory: pytest.TempPathFactory, sandbox_factory: Any, prometheus_factory: Any
) -> AsyncIterator[Env]:
    base = tmp_path_factory.mktemp("auth")
    (base / "scenario.yaml").write_text(SCENARIO)
    cert = make_server_certificate(base / "tls")
    secrets = base / "secrets"
    secrets.mkdir()
    (secrets / "password").write_text(PASSWORD + "\n")
    (secrets / "wrong-password").write_text("not-the-password\n")
    (secrets / "token").write_text(TOKEN)
    sandbox = await sandbox_factory(base / "scenario.yaml")
    prometheus = await prometheus_factory(
        [sandbox.address], web=WebConfig(users={USER: PASSWORD}, tls=cert)
    )
    # Ten 1 s scrapes of the batch landed: a 10 s window has data (a fact, not a sleep).
    await prometheus.wait_for_series(
        'count_over_time(istio_requests_total{destination_workload_namespace="new-a"}[15s]) >= 10'
    )
    proxy = await HeaderProxy(
        upstream=prometheus.url,
        token=TOKEN,
        org_id=ORG,
        upstream_headers={
            "Authorization": f"Basic {b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}"
        },
        upstream_ssl=ssl.create_default_context(cafile=str(cert.ca_file)),
    ).start()
    yield Env(prometheus=prometheus, cert=cert, secrets=secrets, proxy=proxy)
    await proxy.stop()
    await prometheus.stop()
    sandbox.stop()


def basic(env: Env, password: str = "password", ca: bool = True) -> PrometheusAuth:
    doc: dict[str, Any] = {
        "basic_auth": {"username": USER, "password_file": str(env.secrets / password)}
    }
    if ca:
        doc["tls_config"] = {"ca_file": str(env.cert.ca_file)}
    return PrometheusAuth.model_validate(doc)


def bearer(env: Env, org: str = ORG) -> PrometheusAuth:
    return PrometheusAuth.model_validate(
        {
            "authorization": {"credentials_env": "TEST_PROMETHEUS_TOKEN"},
            "http_headers": {"X-Scope-OrgID": org},
        }
    )


def gate_query(url: str, auth: PrometheusAuth | None) -> GateQuery:
    at = datetime.now(UTC)
    return GateQuery(
        prometheus_url=url,
        prometheus_auth=auth,
        slos=[AVAILABILITY],
        batch_namespaces=["new-a"],
        baseline_namespaces=["old-a"],
        new_revision=NEW,
        old_revision=OLD,
        window_start=at - timedelta(seconds=10),
        evaluated_at=at,
        short_window_seconds=5,
        timeout_seconds=5,
    )


def no_secret_in(measured: GateMeasurements) -> None:
    text = measured.model_dump_json()
    for secret in SECRETS:
        assert secret not in text


def verdict(measured: GateMeasurements) -> str:
    spec = GateSpec(slos=[AVAILABILITY], short_window_seconds=5, confirmations=1)
    return evaluate_gate(spec, measured, []).verdict


async def test_gate_measures_through_basic_auth_and_tls(env: Env) -> None:
    assert env.prometheus.url.startswith("https://")
    measured = await measure_gate(gate_query(env.prometheus.url, basic(env)))
    assert measured.errors == []
    inbound = next(s for s in measured.slis if s.window == "since_warmup").inbound
    assert inbound["new-a"].total > 0
    assert await query_revision_xds(env.prometheus.url, NEW, basic(env)) is not None
    assert (await probe_prometheus(env.prometheus.url, basic(env))).problem is None


async def test_without_credentials_the_gate_says_so_and_never_passes(env: Env) -> None:
    measured = await measure_gate(gate_query(env.prometheus.url, basic(env, "wrong-password")))
    assert verdict(measured) == "INCONCLUSIVE"
    assert any(
        "refused the credentials (HTTP 401, it asks for Basic)" in e for e in measured.errors
    )
    assert any("prometheus_auth" in e for e in measured.errors)
    no_secret_in(measured)
    # The precheck refuses the upgrade on it: no retry fixes a wrong password.
    probe = await probe_prometheus(env.prometheus.url, basic(env, "wrong-password"))
    assert probe.reachable and probe.problem and "HTTP 401" in probe.problem

    missing = await measure_gate(gate_query(env.prometheus.url, basic(env, "no-such-file")))
    assert verdict(missing) == "INCONCLUSIVE"
    assert missing.errors == [
        "prometheus_auth.basic_auth.password: the worker cannot read file "
        f"{env.secrets / 'no-such-file'} (No such file or directory); mount the Secret holding "
        "it there (see deploy/worker/worker.yaml)"
    ]
    probe = await probe_prometheus(env.prometheus.url, basic(env, "no-such-file"))
    assert probe.reachable and probe.problem == missing.errors[0]


async def test_a_certificate_the_worker_does_not_trust_is_named(env: Env) -> None:
    measured = await measure_gate(gate_query(env.prometheus.url, basic(env, ca=False)))
    assert verdict(measured) == "INCONCLUSIVE"
    assert any(
        "does not trust its certificate" in e and "tls_config.ca_file" in e for e in measured.errors
    ), measured.errors
    no_secret_in(measured)
    probe = await probe_prometheus(env.prometheus.url, basic(env, ca=False))
    assert probe.reachable and probe.problem and "tls_config.ca_file" in probe.problem


async def test_bearer_token_and_tenant_header_through_the_proxy(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROMETHEUS_TOKEN", TOKEN)
    before = env.proxy.seen["ok"]
    measured = await measure_gate(gate_query(env.proxy.url, bearer(env)))
    assert measured.errors == []
    assert env.proxy.seen["ok"] - before == measured.query_count
    inbound = next(s for s in measured.slis if s.window == "since_warmup").inbound
    assert inbound["new-a"].total > 0
    assert await query_revision_xds(env.proxy.url, NEW, bearer(env)) is not None

    wrong_tenant = await measure_gate(gate_query(env.proxy.url, bearer(env, org="tenant-us")))
    assert verdict(wrong_tenant) == "INCONCLUSIVE"
    assert any("forbade the query (HTTP 403)" in e for e in wrong_tenant.errors)

    monkeypatch.setenv("TEST_PROMETHEUS_TOKEN", "tok-stale-rotated-away")
    stale = await measure_gate(gate_query(env.proxy.url, bearer(env)))
    assert verdict(stale) == "INCONCLUSIVE"
    assert any("refused the credentials (HTTP 401, it asks for Bearer)" in e for e in stale.errors)
    assert "tok-stale-rotated-away" not in stale.model_dump_json()

    monkeypatch.delenv("TEST_PROMETHEUS_TOKEN")
    unset = await measure_gate(gate_query(env.proxy.url, bearer(env)))
    assert verdict(unset) == "INCONCLUSIVE"
    assert "has no environment variable TEST_PROMETHEUS_TOKEN" in unset.errors[0]
    assert (await probe_prometheus(env.proxy.url, None)).problem is not None


async def test_slo_check_uses_the_same_references(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await check_once(
        [AVAILABILITY], env.prometheus.url, ["new-a"], ["old-a"], window_seconds=10,
        auth=basic(env),
    )  # fmt: skip
    assert not any("HTTP 401" in r or "certificate" in r for r in result.reasons), result.reasons
    assert "new-a" in result.namespaces
    refused = await check_once(
        [AVAILABILITY], env.prometheus.url, ["new-a"], window_seconds=10,
        auth=basic(env, "wrong-password"),
    )  # fmt: skip
    assert refused.verdict == "INCONCLUSIVE"
    assert PASSWORD not in json.dumps(refused.model_dump(mode="json"))
