"""Notifications reach a real HTTP receiver during real upgrades, and never hold one up.

A local aiohttp server plays the webhook receivers (a generic JSON one and a Slack-compatible
one); the upgrades run on the real stack (dev server, sandbox, Prometheus). The webhook URLs
carry a token-like path and reach the worker only through its environment and a file: the
history of each upgrade must not hold them, and the history secret scan must stay clean.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import ApproveRequest
from istio_upgrade.models.progress import Progress
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.test_upgrade_rollback import CANARY_GATE
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    record_history,
    upgrade_stack,
)
from tests.replay.test_history_secrets import scan_document

pytestmark = pytest.mark.slow

UI = "http://temporal-ui.example:8080"

SLACK_BLOCK_TYPES = {"header", "section", "actions", "context", "divider"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver: records every POST, answers with ``status`` (per path)."""

    base: str
    received: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Received]:
        """What ``path`` received, in the order the upgrade fired it: notifications in flight
        together (``lock_kept`` and ``rollback_incomplete``) may arrive in either order, so
        by the sequence that ends their idempotency key (retries keep their arrival order)."""
        mine = [r for r in self.received if r.path == path]
        return sorted(mine, key=lambda r: int(r.headers["idempotency-key"].rsplit("/", 1)[1]))

    def events(self, path: str) -> list[str]:
        """The events ``path`` received, in firing order (from the header: Slack bodies carry
        no event field)."""
        return [r.headers.get("x-istio-upgrade-event", "") for r in self.at(path)]

    async def wait_for(self, path: str, event: str, seconds: float = 120) -> Received:
        for _ in range(int(seconds / 0.2)):
            for r in self.received:
                if r.path == path and r.headers.get("x-istio-upgrade-event") == event:
                    return r
            await asyncio.sleep(0.2)
        pytest.fail(f"the receiver at {path} never got {event}: {self.events(path)}")


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(base="")

    async def handle(request: web.Request) -> web.Response:
        state.received.append(
            Received(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                json.loads(await request.read()),
            )
        )
        return web.Response(status=state.status.get(request.path, 200), text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def secret_path() -> str:
    """A path shaped like a Slack webhook URL, its last parts the credential: the history
    secret scan's ``webhook URL`` pattern would find it, were it in a history."""
    return (
        f"/hooks.slack.com/services/T{uuid.uuid4().hex[:8].upper()}/"
        f"B{uuid.uuid4().hex[:8].upper()}/{uuid.uuid4().hex[:24]}"
    )


async def assert_no_url_in_history(handle: WorkflowHandle[Any, Any], *urls: str) -> None:
    """Neither the URLs nor their token paths are in the history, raw or in a decoded payload;
    the history secret scan (tests/replay/test_history_secrets.py) finds nothing."""
    history = await handle.fetch_history()
    text = history.to_json()
    doc = json.loads(text)
    findings = [str(f) for f in scan_document("live", doc)]
    assert findings == [], findings
    payloads = _payload_texts(doc)
    assert len(payloads) > 10  # the decoding reached the inputs and results
    for url in urls:
        token = url.split("/services/", 1)[-1]
        assert url not in text and token not in text
        assert not any(token in p for p in payloads), f"{token[:6]}… in a payload"


def _payload_texts(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        if "metadata" in value and "data" in value and isinstance(value["data"], str):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                found.append(base64.b64decode(value["data"]).decode())
        for item in value.values():
            found += _payload_texts(item)
    elif isinstance(value, list):
        for item in value:
            found += _payload_texts(item)
    return found


def check_slack_shape(body: dict[str, Any]) -> None:
    """What a Slack incoming webhook accepts: ``text`` and Block Kit ``blocks`` only."""
    assert set(body) == {"text", "blocks"}, set(body)
    assert isinstance(body["text"], str) and body["text"]
    blocks = body["blocks"]
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50
    for block in blocks:
        assert block["type"] in SLACK_BLOCK_TYPES, block
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] == "mrkdwn" and len(block["text"]["text"]) <= 3000
            for f in block.get("fields", []):
                assert f["type"] == "mrkdwn" and len(f["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "actions":
            for element in block["elements"]:
                assert element["type"] == "button" and element["url"].startswith("http")
        if block["type"] == "context":
            assert all(e["type"] in {"mrkdwn", "plain_text"} for e in block["elements"])


async def test_approval_then_success_reach_json_and_slack_receivers(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    async with (
        receiver() as hooks,
        upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack,
    ):
        json_path, slack_path = secret_path(), secret_path()
        env = f"ISTIO_UPGRADE_TEST_WEBHOOK_{uuid.uuid4().hex[:8].upper()}"
        monkeypatch.setenv(env, hooks.url(json_path))
        monkeypatch.setenv("TEMPORAL_UI_URL", UI)
        url_file = tmp_path / "webhook-url"
        url_file.write_text(hooks.url(slack_path) + "\n")
        spec = fast_spec(
            stack.prometheus.url,
            approvals={"before_first_batch": True},
            notifications=[
                {"name": "oncall", "url_env": env},
                {
                    "name": "slack",
                    "format": "slack",
                    "url_file": str(url_file),
                    "events": ["waiting_for_approval", "succeeded"],
                },
            ],
        )
        handle = await stack.start(spec)
        waiting = await hooks.wait_for(json_path, "waiting_for_approval")
        progress = await handle.query(IstioCanaryUpgrade.progress)
        # The upgrade waits for the person it told, not for the notification.
        assert progress.phase.value == "WAITING_APPROVAL", progress.phase
        body = waiting.body
        assert body["upgrade_id"] == handle.id
        assert body["cluster"] == "demo"
        assert (body["from_revision"], body["to_revision"]) == ("1-30-3", "1-31-0")
        assert f"istio-upgrade approve {handle.id}" in body["next_steps"]
        assert "migrate batch 0" in body["summary"]
        assert body["web_ui"] == f"{UI}/namespaces/default/workflows/{handle.id}"
        assert body["receiver"] == "oncall" and body["source"] == "istio-upgrade"
        key = body["idempotency_key"]
        assert waiting.headers["idempotency-key"] == key
        assert key.startswith(f"{handle.id}@{handle.first_execution_run_id}/waiting_for_approval/")

        slack_waiting = await hooks.wait_for(slack_path, "waiting_for_approval")
        check_slack_shape(slack_waiting.body)
        assert slack_waiting.headers["idempotency-key"] == key  # one notification, two receivers
        assert "waits for approval" in slack_waiting.body["text"]
        buttons = [b for b in slack_waiting.body["blocks"] if b["type"] == "actions"]
        assert buttons and buttons[0]["elements"][0]["url"] == body["web_ui"]

        await handle.execute_update(IstioCanaryUpgrade.approve, ApproveRequest(approver="alice"))
        result = await handle.result()
        assert result.outcome == "SUCCEEDED"
        # The run ended only once its last notification was delivered.
        assert hooks.events(json_path) == ["waiting_for_approval", "succeeded"]
        assert hooks.events(slack_path) == ["waiting_for_approval", "succeeded"]
        done = await hooks.wait_for(json_path, "succeeded")
        assert done.body["batch"] is None and done.body["idempotency_key"] != key
        assert "succeeded" in done.body["summary"]
        check_slack_shape((await hooks.wait_for(slack_path, "succeeded")).body)
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert [(n.event, n.receiver, n.status) for n in progress.notifications] == [
            ("waiting_for_approval", "oncall", "delivered"),
            ("waiting_for_approval", "slack", "delivered"),
            ("succeeded", "oncall", "delivered"),
            ("succeeded", "slack", "delivered"),
        ]
        await assert_no_url_in_history(handle, hooks.url(json_path), hooks.url(slack_path))
        await record_history(handle, "notifications-approval-6")


async def test_bad_canary_tells_gate_failed_then_rollback_completed(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        receiver() as hooks,
        upgrade_stack(
            temporal_local.client, sandbox_factory, prometheus_factory, "bad-canary"
        ) as stack,
    ):
        path = secret_path()
        env = f"ISTIO_UPGRADE_TEST_WEBHOOK_{uuid.uuid4().hex[:8].upper()}"
        monkeypatch.setenv(env, hooks.url(path))
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["checkout", "cart"]},
            gate={**CANARY_GATE, "on_inconclusive": "rollback"},
            notifications=[{"name": "oncall", "url_env": env}],
        )
        handle = await stack.start(spec)
        cause = await failure(handle)
        assert cause.type == "GateFailed", cause.message
        assert hooks.events(path) == ["gate_failed", "rollback_completed"]
        gate, rolled = (r.body for r in hooks.at(path))
        assert gate["verdict"] == "FAIL" and gate["batch"] == 0
        assert gate["reasons"] and any("availability" in r for r in gate["reasons"])
        assert "rolls it back" in gate["summary"]
        assert rolled["phase"] == "ROLLED_BACK"
        assert "back on 1-30-3" in rolled["summary"]
        assert gate["idempotency_key"] != rolled["idempotency_key"]
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert {n.status for n in progress.notifications} == {"delivered"}
        await assert_no_url_in_history(handle, hooks.url(path))
        await record_history(handle, "notifications-rollback-6")


async def test_a_failing_receiver_never_fails_the_upgrade(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        receiver() as hooks,
        upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack,
    ):
        broken = secret_path()
        hooks.status[broken] = 500
        # Nothing listens there: the receiver is down.
        async with receiver() as gone:
            down = gone.url(secret_path())
        env_500 = f"ISTIO_UPGRADE_TEST_WEBHOOK_{uuid.uuid4().hex[:8].upper()}"
        env_down = f"ISTIO_UPGRADE_TEST_WEBHOOK_{uuid.uuid4().hex[:8].upper()}"
        monkeypatch.setenv(env_500, hooks.url(broken))
        monkeypatch.setenv(env_down, down)
        spec = fast_spec(
            stack.prometheus.url,
            notifications=[
                {"name": "flaky", "url_env": env_500},
                {"name": "down", "url_env": env_down, "format": "slack"},
                {"name": "unset", "url_env": "ISTIO_UPGRADE_TEST_WEBHOOK_NEVER_SET"},
            ],
        )
        handle = await stack.start(spec)
        result = await handle.result()
        assert result.outcome == "SUCCEEDED"
        # Retried with backoff, a bounded number of times, always as the same notification.
        attempts = [r for r in hooks.received if r.path == broken]
        assert len(attempts) == 4, len(attempts)
        assert len({r.headers["idempotency-key"] for r in attempts}) == 1

        progress: Progress = await handle.query(IstioCanaryUpgrade.progress)
        records = {n.receiver: n for n in progress.notifications}
        assert {n.status for n in records.values()} == {"failed"}
        assert "HTTP 500" in records["flaky"].detail
        assert "could not be reached" in records["down"].detail
        assert "ISTIO_UPGRADE_TEST_WEBHOOK_NEVER_SET is not set" in records["unset"].detail
        warned = [w for w in result.warnings if w.startswith("notification succeeded to")]
        assert len(warned) == 3, result.warnings
        for text in [*warned, *(n.detail for n in records.values())]:
            assert "127.0.0.1" not in text and "/services/" not in text, text
        await assert_no_url_in_history(handle, hooks.url(broken), down)
        await record_history(handle, "notifications-failed-6")
