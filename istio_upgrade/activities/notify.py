"""The ``notify`` activity: POST one notification to one webhook, its URL read on the worker.

The URL comes from the receiver's reference (``url_env``, ``url_file``) here, in the
activity, and goes nowhere else: not into the result, not into an error (every message is
masked before it leaves, since failures are recorded in history), not into logs. The body is
the generic JSON payload or a Slack incoming-webhook message (``format``). Every attempt sends
the same ``Idempotency-Key`` header (also in the body), so a receiver can drop the duplicate
a retry after a lost answer produces.

Failures the receiver may get over (connection refused, timeouts, 408, 429, 5xx) raise a
retryable ``NotificationFailed``; a 4xx or a missing or malformed URL raise non-retryable
errors, as retrying would not help. The workflow bounds the attempts and never lets a failure
stop the upgrade (``workflows/notifications.py``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from istio_upgrade.models.notifications import (
    NotificationMessage,
    NotificationSpec,
    NotifyInput,
    NotifyResult,
)

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 10.0
"""Seconds one POST may take (the activity's start-to-close timeout is a little longer)."""
MAX_URL_FILE = 16 * 1024
MAX_RETRY_AFTER = 15.0
"""A receiver's ``Retry-After`` is honoured up to this many seconds."""
UI_ENV = "TEMPORAL_UI_URL"
"""Worker environment variable: base URL of the Temporal Web UI, for a link to the upgrade."""
MASK = "<webhook URL>"

_TITLES = {
    "waiting_for_approval": "waits for approval",
    "gate_failed": "gate failed",
    "rollback_completed": "rolled back",
    "rollback_incomplete": "rollback INCOMPLETE",
    "lock_kept": "cluster lock kept",
    "succeeded": "succeeded",
}
_EMOJI = {
    "waiting_for_approval": ":raised_hand:",
    "gate_failed": ":x:",
    "rollback_completed": ":leftwards_arrow_with_hook:",
    "rollback_incomplete": ":rotating_light:",
    "lock_kept": ":lock:",
    "succeeded": ":white_check_mark:",
}


def title(message: NotificationMessage) -> str:
    """``Istio upgrade of <cluster> (<from> → <to>): <what happened>``."""
    revisions = f"{message.from_revision or '?'} → {message.to_revision}"
    return f"Istio upgrade of {message.cluster} ({revisions}): {_TITLES[message.event]}"


def web_ui_link(upgrade_id: str, namespace: str, base: str | None) -> str | None:
    """The Web UI page of the upgrade (its latest run), when ``TEMPORAL_UI_URL`` is set."""
    if not base:
        return None
    parts = urlsplit(base)
    if parts.scheme not in {"http", "https"} or not parts.hostname or "@" in parts.netloc:
        return None  # not a plain http(s) base URL: no link rather than a broken one
    root = base.rstrip("/")
    return f"{root}/namespaces/{quote(namespace, safe='')}/workflows/{quote(upgrade_id, safe='')}"


def json_body(message: NotificationMessage, link: str | None, receiver: str) -> dict[str, Any]:
    """The generic payload: the message's fields, a title, the link and the receiver's name."""
    body = message.model_dump(mode="json")
    body.update(source="istio-upgrade", title=title(message), web_ui=link, receiver=receiver)
    return body


def _mrkdwn(text: str) -> str:
    # Slack's control characters in mrkdwn (api.slack.com "Escaping text").
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: NotificationMessage, link: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the fallback) and Block Kit ``blocks``.

    Within Slack's limits: a header's plain text at most 150 characters, a section's text at
    most 3,000, at most 10 fields.
    """
    head = f"{_EMOJI[message.event]} {title(message)}"
    fields = [
        f"*Cluster*\n{_mrkdwn(message.cluster)}",
        f"*Revisions*\n{_mrkdwn(message.from_revision or '?')} → {_mrkdwn(message.to_revision)}",
        f"*Phase*\n{_mrkdwn(message.phase)}",
        f"*Upgrade*\n`{_mrkdwn(message.upgrade_id)}`",
    ]
    if message.batch is not None:
        fields.insert(2, f"*Batch*\n{message.batch}")
    if message.verdict:
        fields.append(f"*Gate verdict*\n{_mrkdwn(message.verdict)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(message.summary)[:3000]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields[:10]]},
    ]
    if message.reasons:
        listed = "\n".join(f"• {_mrkdwn(r)}" for r in message.reasons)
        if message.omitted_reasons:
            listed += f"\n… and {message.omitted_reasons} more"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{listed}"[:3000]}}
        )
    blocks.append(
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Next*\n{_mrkdwn(message.next_steps)}"[:3000]},
        }
    )
    if link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Temporal"},
                        "url": link,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"istio-upgrade · key `{message.idempotency_key}`"}
            ],
        }
    )
    return {"text": _mrkdwn(f"{head}: {message.summary}")[:3000], "blocks": blocks}


def resolve_url(receiver: NotificationSpec) -> str:
    """The webhook URL from the receiver's reference, read on the worker.

    Raises:
        ApplicationError: ``NotificationMisconfigured`` (non-retryable): the variable is unset,
            the file is missing or unreadable, or its content is not an http(s) URL. The
            message names the reference, never its content.
    """
    where = receiver.reference
    if receiver.url_env is not None:
        value = os.environ.get(receiver.url_env, "").strip()
        if not value:
            raise _misconfigured(
                f"{where} is not set on the worker; set it from a Secret (see docs/operations.md, "
                "Notifications)"
            )
    else:
        path = Path(receiver.url_file or "")
        try:
            value = path.read_text(errors="replace")[:MAX_URL_FILE].strip()
        except OSError as error:
            raise _misconfigured(
                f"{where} cannot be read on the worker ({error.strerror or type(error).__name__});"
                " mount the Secret holding the webhook URL there"
            ) from None
        if not value:
            raise _misconfigured(f"{where} is empty; put the webhook URL in it")
    parts = urlsplit(value)
    one_line = not any(c.isspace() for c in value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or not one_line:
        raise _misconfigured(
            f"{where} does not hold an http(s) URL on one line (its content is not shown)"
        )
    return value


def _misconfigured(message: str) -> ApplicationError:
    return ApplicationError(message, type="NotificationMisconfigured", non_retryable=True)


def mask(text: str, url: str) -> str:
    """``text`` with the URL, and its host-relative parts, replaced by ``<webhook URL>``."""
    parts = urlsplit(url)
    secrets = [url, url.rstrip("/"), parts.path + (f"?{parts.query}" if parts.query else "")]
    secrets += [parts.query, parts.path]
    for secret in sorted((s for s in secrets if len(s) > 1), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _retry_after(response: httpx.Response) -> timedelta | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return timedelta(seconds=min(max(seconds, 0.0), MAX_RETRY_AFTER))


@activity.defn(name="notify")
async def notify(request: NotifyInput) -> NotifyResult:
    """POST ``request.message`` to ``request.receiver``'s webhook; its answer's status.

    Raises:
        ApplicationError: ``NotificationFailed`` (retryable: unreachable, 408, 429, 5xx),
            ``NotificationRejected`` (another 4xx) or ``NotificationMisconfigured``; every
            message masks the URL.
    """
    info = activity.info()
    receiver, message = request.receiver, request.message
    url = resolve_url(receiver)
    namespace = info.workflow_namespace or "default"
    link = web_ui_link(message.upgrade_id, namespace, os.environ.get(UI_ENV))
    body = (
        slack_body(message, link)
        if receiver.format == "slack"
        else json_body(message, link, receiver.name)
    )
    headers = {
        "Idempotency-Key": message.idempotency_key,
        "X-Istio-Upgrade-Event": message.event,
        "User-Agent": "istio-upgrade",
    }
    try:
        # No redirects: the payload goes to the URL the secret's owner chose, nowhere else.
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, follow_redirects=False) as client:
            response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as error:
        reason = mask(str(error), url) or type(error).__name__
        raise ApplicationError(
            f"{receiver.name}: the webhook ({receiver.reference}) could not be reached: "
            f"{type(error).__name__}: {reason}",
            type="NotificationFailed",
        ) from None
    status = response.status_code
    log.info(
        "notification sent",
        receiver=receiver.name,
        event_name=message.event,
        status=status,
        attempt=info.attempt,
    )
    if 200 <= status < 300:
        return NotifyResult(status_code=status, attempt=info.attempt)
    what = f"{receiver.name}: the webhook ({receiver.reference}) answered HTTP {status}"
    if status in {408, 429} or status >= 500:
        raise ApplicationError(
            what, type="NotificationFailed", next_retry_delay=_retry_after(response)
        )
    raise ApplicationError(
        f"{what}; check the URL in {receiver.reference} and the receiver's format "
        f"({receiver.format})",
        type="NotificationRejected",
        non_retryable=True,
    )
