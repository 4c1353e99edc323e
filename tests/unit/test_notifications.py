"""Notification receivers are named by reference only; payloads and the activity's errors.

The activity runs in ``ActivityEnvironment`` against a real local HTTP server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from istio_upgrade.activities.notify import (
    MASK,
    json_body,
    mask,
    notify,
    resolve_url,
    slack_body,
    web_ui_link,
)
from istio_upgrade.models.notifications import (
    EVENTS,
    NotificationMessage,
    NotificationSpec,
    NotifyInput,
)
from tests.unit.plan_fixtures import spec

SLACK_URL = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"


def receivers(*entries: dict[str, Any]) -> list[NotificationSpec]:
    return spec(notifications=list(entries)).notifications


def refusal(*entries: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        receivers(*entries)
    return str(info.value)


def test_a_receiver_by_env_gets_every_event_by_default() -> None:
    (oncall,) = receivers({"name": "oncall", "url_env": "ISTIO_UPGRADE_WEBHOOK_URL"})
    assert oncall.format == "json" and oncall.events == list(EVENTS)
    assert oncall.reference == "environment variable ISTIO_UPGRADE_WEBHOOK_URL"
    (slack,) = receivers(
        {"name": "slack", "format": "slack", "url_file": "/etc/istio-upgrade/webhook-url"}
    )
    assert slack.reference == "file /etc/istio-upgrade/webhook-url"


@pytest.mark.parametrize("field", ["url_env", "url_file"])
@pytest.mark.parametrize("value", [SLACK_URL, "http://127.0.0.1:9000/hook", "hooks.slack.com/x"])
def test_a_url_in_a_reference_field_is_refused_without_echoing_it(field: str, value: str) -> None:
    message = refusal({"name": "oncall", field: value})
    assert f"notifications[0].{field}" in message
    assert "worker-side secret" in message
    assert value not in message and "T0AAAAAAA" not in message


@pytest.mark.parametrize("key", ["url", "webhook_url"])
def test_a_url_field_is_refused_saying_where_the_url_goes(key: str) -> None:
    message = refusal({"name": "oncall", key: SLACK_URL})
    assert "takes no URL" in message and "url_env" in message and "url_file" in message
    assert SLACK_URL not in message


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"name": "a", "url_env": "1BAD"}, "name of an environment variable"),
        ({"name": "a", "url_env": "HAS SPACE"}, "name of an environment variable"),
        ({"name": "a", "url_file": "etc/webhook"}, "absolute path"),
        ({"name": "a", "url_file": "/etc/../webhook"}, "'..'"),
        ({"name": "a", "url_file": "/etc/web hook"}, "spaces"),
        ({"name": "a"}, "exactly one of url_env and url_file (got neither)"),
        ({"name": "a", "url_env": "A", "url_file": "/a"}, "got url_env, url_file"),
        ({"name": "Oncall", "url_env": "A"}, "DNS-1123"),
        ({"name": "a", "url_env": "A", "events": []}, "events is empty"),
        ({"name": "a", "url_env": "A", "events": ["succeeded", "succeeded"]}, "twice"),
        ({"name": "a", "url_env": "A", "events": ["deployed"]}, "waiting_for_approval"),
        ({"name": "a", "url_env": "A", "format": "teams"}, "'json' or 'slack'"),
    ],
)
def test_bad_receivers_are_refused_naming_the_fix(entry: dict[str, Any], says: str) -> None:
    assert says in refusal(entry)


def test_receivers_are_bounded_and_named_once() -> None:
    assert "used twice" in refusal({"name": "a", "url_env": "A"}, {"name": "a", "url_env": "B"})
    many = [{"name": f"r{i}", "url_env": "A"} for i in range(11)]
    assert "at most 10" in refusal(*many)


def message(**overrides: Any) -> NotificationMessage:
    doc: dict[str, Any] = {
        "event": "gate_failed",
        "idempotency_key": "istio-upgrade.demo.1-31-0@run/gate_failed/batch-0/1",
        "upgrade_id": "istio-upgrade.demo.1-31-0",
        "cluster": "demo",
        "from_revision": "1-30-3",
        "to_revision": "1-31-0",
        "batch": 0,
        "phase": "SOAKING",
        "summary": "The gate refused batch 0 <checkout> & cart",
        "verdict": "FAIL",
        "reasons": ["checkout: availability burn 5.0x > 2x"],
        "next_steps": "Nothing to do yet",
        "occurred_at": datetime(2026, 12, 1, tzinfo=UTC),
        **overrides,
    }
    return NotificationMessage.model_validate(doc)


def test_the_json_payload_carries_the_message_a_title_and_the_link() -> None:
    link = web_ui_link("istio-upgrade.demo.1-31-0", "default", "http://ui:8080/")
    assert link == "http://ui:8080/namespaces/default/workflows/istio-upgrade.demo.1-31-0"
    body = json_body(message(), link, "oncall")
    assert body["event"] == "gate_failed" and body["verdict"] == "FAIL"
    assert body["web_ui"] == link and body["receiver"] == "oncall"
    assert body["title"] == "Istio upgrade of demo (1-30-3 → 1-31-0): gate failed"
    json.dumps(body)  # JSON all the way down
    assert web_ui_link("x", "default", None) is None
    assert web_ui_link("x", "default", "https://user:pw@ui") is None


def test_the_slack_payload_is_an_incoming_webhook_message() -> None:
    body = slack_body(message(reasons=[f"r{i}" for i in range(3)], omitted_reasons=2), "http://u")
    assert set(body) == {"text", "blocks"}
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and "actions" in types and types[-1] == "context"
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    text = json.dumps(body)
    # mrkdwn control characters escaped, so the summary cannot inject links or mentions.
    assert "&lt;checkout&gt; &amp; cart" in text and "<checkout>" not in text
    assert "and 2 more" in text
    assert "actions" not in [b["type"] for b in slack_body(message(), None)["blocks"]]


def test_the_url_is_resolved_on_the_worker_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    by_env = NotificationSpec(name="a", url_env="TEST_NOTIFY_URL")
    monkeypatch.delenv("TEST_NOTIFY_URL", raising=False)
    with pytest.raises(ApplicationError) as unset:
        resolve_url(by_env)
    assert unset.value.type == "NotificationMisconfigured" and unset.value.non_retryable
    assert "TEST_NOTIFY_URL is not set" in unset.value.message
    monkeypatch.setenv("TEST_NOTIFY_URL", SLACK_URL)
    assert resolve_url(by_env) == SLACK_URL

    path = tmp_path / "url"
    by_file = NotificationSpec(name="a", url_file=str(path))
    with pytest.raises(ApplicationError) as missing:
        resolve_url(by_file)
    assert f"file {path} cannot be read" in missing.value.message
    path.write_text("not-a-url-but-a-secret-token\n")
    with pytest.raises(ApplicationError) as garbage:
        resolve_url(by_file)
    assert "not-a-url" not in garbage.value.message
    path.write_text(f"{SLACK_URL}\n")
    assert resolve_url(by_file) == SLACK_URL


def test_mask_hides_the_url_and_its_path() -> None:
    text = f"POST {SLACK_URL} failed; path /services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"
    masked = mask(text, SLACK_URL)
    assert "abcdefghijklmnopqrstuvwx" not in masked and masked.count(MASK) == 2


@contextlib.asynccontextmanager
async def server(status: int) -> AsyncIterator[tuple[str, list[web.Request], list[Any]]]:
    seen: list[web.Request] = []
    bodies: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(json.loads(await request.read()))
        return web.Response(status=status, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/services/T0/B0/tokentokentoken", seen, bodies
    finally:
        await runner.cleanup()


async def test_the_activity_posts_with_the_idempotency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with server(200) as (url, seen, bodies):
        monkeypatch.setenv("TEST_NOTIFY_URL", url)
        request = NotifyInput(
            receiver=NotificationSpec(name="a", url_env="TEST_NOTIFY_URL", format="slack"),
            message=message(),
        )
        result = await ActivityEnvironment().run(notify, request)
    assert result.status_code == 200 and result.attempt == 1
    assert seen[0].headers["Idempotency-Key"] == message().idempotency_key
    assert seen[0].headers["X-Istio-Upgrade-Event"] == "gate_failed"
    assert set(bodies[0]) == {"text", "blocks"}


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (500, "NotificationFailed", True),
        (429, "NotificationFailed", True),
        (404, "NotificationRejected", False),
    ],
)
async def test_a_refusing_receiver_raises_a_masked_error(
    monkeypatch: pytest.MonkeyPatch, status: int, kind: str, retryable: bool
) -> None:
    async with server(status) as (url, _, _):
        monkeypatch.setenv("TEST_NOTIFY_URL", url)
        request = NotifyInput(
            receiver=NotificationSpec(name="a", url_env="TEST_NOTIFY_URL"), message=message()
        )
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(notify, request)
    error = info.value
    assert error.type == kind and error.non_retryable is not retryable
    assert f"HTTP {status}" in error.message
    assert "127.0.0.1" not in error.message and "tokentoken" not in error.message
    if status == 429:
        assert error.next_retry_delay is not None and error.next_retry_delay.total_seconds() == 3


async def test_an_unreachable_receiver_is_retryable_and_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with server(200) as (url, _, _):
        pass  # closed: nothing listens there any more
    monkeypatch.setenv("TEST_NOTIFY_URL", url)
    request = NotifyInput(
        receiver=NotificationSpec(name="a", url_env="TEST_NOTIFY_URL"), message=message()
    )
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(notify, request)
    assert info.value.type == "NotificationFailed" and not info.value.non_retryable
    assert "could not be reached" in info.value.message
    assert "127.0.0.1" not in info.value.message and "tokentoken" not in info.value.message
