"""A Prometheus URL that answers, but not as Prometheus: an HTML page with 200 (Grafana, a
console, an authenticating proxy's sign-in page), a redirect, or some other JSON. The gate and
``slo check`` say so and name the field to fix — never PASS, never a bare "no data"."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities.prometheus import collect, query_revision_xds
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.main import cli
from istio_upgrade.models.gate import GateQuery, GateSpec
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.workflows.gate import evaluate_gate

pytestmark = pytest.mark.bad_input

PAGES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/grafana": (
        200,
        {"Content-Type": "text/html; charset=utf-8"},
        b"<!DOCTYPE html><html><head><title>Grafana</title></head><body>Welcome</body></html>",
    ),
    "/untyped": (200, {}, b"<html><head><title>Sign in</title></head><body></body></html>"),
    "/login": (302, {"Location": "https://sso.example.com/oauth2/start?rd=%2F&state=xyz"}, b""),
    "/other-json": (200, {"Content-Type": "application/json"}, b'{"ok": true}'),
    "/json-list": (200, {"Content-Type": "application/json"}, b"[1, 2, 3]"),
}
"""Base path → the answer to everything under it."""


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        base = "/" + self.path.lstrip("/").split("/", 1)[0]
        status, headers, body = PAGES.get(base, (404, {}, b"404 page not found\n"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def not_prometheus() -> Iterator[str]:
    """Base URL of a server that answers like everything but Prometheus."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # bound (listening) on return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CASES = {
    "/grafana": "answered HTML (HTTP 200, page title 'Grafana'), not the Prometheus API",
    "/untyped": "answered HTML (HTTP 200, page title 'Sign in'), not the Prometheus API",
    "/login": "answered a redirect (HTTP 302 to https://sso.example.com/oauth2/start)",
    "/other-json": "answered JSON without the API's status field, not the Prometheus API",
    "/json-list": "answered JSON without the API's status field, not the Prometheus API",
    "/prometheus-prefix-missing": "answered HTTP 404 without JSON, not the Prometheus API",
}
FIX = "check spec.gate.prometheus_url"


@pytest.mark.parametrize(("path", "said"), CASES.items(), ids=[p.strip("/") for p in CASES])
async def test_the_gate_says_what_answered_and_is_never_pass(
    not_prometheus: str, path: str, said: str
) -> None:
    now = datetime.now(UTC)
    slos = [SLOSpec(name="availability", objective=0.99)]
    query = GateQuery(
        prometheus_url=not_prometheus + path,
        slos=slos,
        batch_namespaces=["frontend"],
        baseline_namespaces=["backend"],
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=now - timedelta(seconds=60),
        evaluated_at=now,
        pre_migration_start=now - timedelta(seconds=180),
        pre_migration_end=now - timedelta(seconds=90),
    )
    async with httpx.AsyncClient(timeout=5) as http:
        measured = await collect(query, http)
    assert measured.errors, measured
    assert all(said in e and FIX in e for e in measured.errors), measured.errors
    assert "state=xyz" not in " ".join(measured.errors)  # a redirect's query is not repeated
    result = evaluate_gate(GateSpec(slos=slos), measured, [])
    assert result.verdict == "INCONCLUSIVE", result
    assert any(said in reason for reason in result.reasons), result.reasons


async def test_the_old_revision_check_refuses_to_guess(not_prometheus: str) -> None:
    """The cleanup asks how many proxies still use the old revision: an HTML answer is an
    error naming the URL to fix, never "none"."""
    with pytest.raises(ApplicationError) as info:
        await query_revision_xds(not_prometheus + "/grafana", "1-30-3")
    assert CASES["/grafana"] in info.value.message and FIX in info.value.message
    assert info.value.type == "PrometheusUnavailable"


def test_slo_check_against_html_is_inconclusive_and_says_why(
    not_prometheus: str, tmp_path: Path
) -> None:
    path = tmp_path / "slos.yaml"
    path.write_text(yaml.safe_dump({"slos": [{"name": "availability", "objective": 0.99}]}))
    result = CliRunner().invoke(
        cli,
        ["slo", "check", "-f", str(path), "--prometheus", not_prometheus + "/grafana",
         "--namespaces", "frontend", "--window", "1m"],
    )  # fmt: skip
    assert result.exit_code == ExitCode.WAITING, (result.stdout, result.stderr)
    text = " ".join(result.stdout.split())
    assert "verdict: INCONCLUSIVE" in text
    assert "answered HTML" in text and "not the Prometheus API" in text and FIX in text


async def test_an_upgrade_whose_gate_answers_html_is_refused_before_any_write(
    not_prometheus: str, temporal_local: Any, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    """The precheck asks the gate's Prometheus once: Grafana's page refuses the upgrade before
    the lock or the install, naming the field to fix."""
    from tests.integration.upgrade_stack import failure, fast_spec, upgrade_stack

    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        await asyncio.to_thread(httpx.post, f"{stack.sandbox.url}/sandbox/stats/reset", timeout=10)
        spec = fast_spec(f"{not_prometheus}/grafana")
        cause = await failure(await stack.start(spec))
        assert cause.type == "PrecheckFailed", cause.message
        assert "answered HTML (HTTP 200, page title 'Grafana')" in cause.message
        assert "spec.gate.prometheus_url" in cause.message
        assert stack.sandbox.stats()["writes"] == 0
