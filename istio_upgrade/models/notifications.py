"""Notifications when a person is needed: where they go (by reference) and what they say.

A spec names each receiver's webhook URL by *reference*, never by value: ``url_env`` (an
environment variable of the worker) or ``url_file`` (a file on the worker, e.g. a mounted
Kubernetes Secret). The spec is the workflow's input and stays in Temporal's history in
clear; a Slack incoming-webhook URL is a bearer credential (anyone holding it may post). Like
Flagger's ``AlertProvider`` (whose ``secretRef`` names the Secret holding the address), the
value lives next to the worker only, and the ``notify`` activity resolves it there.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NotificationEvent = Literal[
    "waiting_for_approval",
    "gate_failed",
    "rollback_completed",
    "rollback_incomplete",
    "lock_kept",
    "succeeded",
]
"""What a person is told about: the upgrade waits for them, its gate refused a batch, a
rollback ended (complete, or incomplete: a person must repair), the cluster lock stays taken,
or the upgrade succeeded."""

EVENTS: tuple[NotificationEvent, ...] = get_args(NotificationEvent)

NotificationFormat = Literal["json", "slack"]
"""``json``: the generic payload (:class:`NotificationMessage` plus a link); ``slack``: a
Slack incoming-webhook message (``text`` and Block Kit ``blocks``)."""

MAX_RECEIVERS = 10
MAX_REASONS = 10
"""Verdict reasons a message carries (the first ones); the rest are counted."""
MAX_TEXT = 1000
"""Characters of the summary, the next steps and each reason in a message."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_URL_LIKE = re.compile(r"(?i)^\s*(?:[a-z][a-z0-9+.-]*://|www\.|hooks\.)|://|hooks\.slack\.com")

_SECRET_HINT = (
    "the spec is stored in clear in Temporal's history, and a webhook URL is a credential: "
    "put the URL in a worker-side secret (an environment variable of the worker, or a file "
    "mounted from a Kubernetes Secret) and name it here"
)


def looks_like_url(value: str) -> bool:
    """Whether ``value`` looks like a URL (which a reference field must never hold)."""
    return _URL_LIKE.search(value) is not None


class NotificationSpec(BaseModel):
    """One receiver of notifications: a webhook named by reference, and the events it wants."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        # Never echo the input: a misplaced URL would end up in the error, the Web UI, logs.
        hide_input_in_errors=True,
    )

    name: str
    """Short name of the receiver (DNS-1123 label), shown in the progress, e.g. ``oncall``."""
    format: NotificationFormat = "json"
    """``json`` (generic) or ``slack`` (a Slack incoming webhook)."""
    url_env: str | None = None
    """Environment variable of the worker holding the webhook URL, e.g.
    ``ISTIO_UPGRADE_WEBHOOK_URL``."""
    url_file: str | None = None
    """Absolute path of a file on the worker holding the webhook URL, e.g. a Secret mounted at
    ``/etc/istio-upgrade/webhook-url``."""
    events: list[NotificationEvent] = Field(default_factory=lambda: list(EVENTS))
    """Events sent to this receiver; default: all of them."""

    @model_validator(mode="before")
    @classmethod
    def _no_url_value(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = sorted(k for k in data if k in {"url", "webhook_url", "address", "webhook"})
            if given:
                raise ValueError(
                    f"{given[0]}: a notification takes no URL; {_SECRET_HINT} with url_env "
                    "(e.g. ISTIO_UPGRADE_WEBHOOK_URL) or url_file "
                    "(e.g. /etc/istio-upgrade/webhook-url)"
                )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "name must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
                "characters), e.g. oncall-slack"
            )
        return value

    @field_validator("url_env")
    @classmethod
    def _url_env(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if looks_like_url(value):
            raise ValueError(f"url_env holds a URL, not a variable name; {_SECRET_HINT}")
        if len(value) > 255 or not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "url_env must be the name of an environment variable of the worker: letters, "
                "digits and '_', not starting with a digit, e.g. ISTIO_UPGRADE_WEBHOOK_URL"
            )
        return value

    @field_validator("url_file")
    @classmethod
    def _url_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if looks_like_url(value):
            raise ValueError(f"url_file holds a URL, not a file path; {_SECRET_HINT}")
        if any(unicodedata.category(c) in {"Cc", "Cf"} or c.isspace() for c in value):
            raise ValueError(
                "url_file holds spaces or control characters; write the path of the file on "
                "the worker, e.g. /etc/istio-upgrade/webhook-url"
            )
        if not value.startswith("/") or len(value) > 4096:
            raise ValueError(
                "url_file must be an absolute path on the worker of at most 4096 characters, "
                "e.g. /etc/istio-upgrade/webhook-url"
            )
        if ".." in value.split("/"):
            raise ValueError(
                "url_file may not contain '..'; name the file's own path, e.g. "
                "/etc/istio-upgrade/webhook-url"
            )
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[NotificationEvent]) -> list[NotificationEvent]:
        if not value:
            raise ValueError(
                f"events is empty; list some of {', '.join(EVENTS)} or omit it for all"
            )
        if len(set(value)) != len(value):
            raise ValueError("events lists an event twice; list each once")
        return value

    @model_validator(mode="after")
    def _one_reference(self) -> NotificationSpec:
        given = [f for f in ("url_env", "url_file") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                f"notification {self.name!r}: set exactly one of url_env and url_file "
                f"(got {', '.join(given) or 'neither'}): the worker reads the webhook URL "
                "from there"
            )
        return self

    @property
    def reference(self) -> str:
        """Where the URL is, in words (never the URL itself)."""
        if self.url_env is not None:
            return f"environment variable {self.url_env}"
        return f"file {self.url_file}"


def check_receivers(value: list[NotificationSpec]) -> list[NotificationSpec]:
    """At most :data:`MAX_RECEIVERS`, each name once."""
    if len(value) > MAX_RECEIVERS:
        raise ValueError(f"notifications lists {len(value)} receivers; at most {MAX_RECEIVERS}")
    names = [r.name for r in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"notifications: name {twice[0]!r} is used twice; name each once")
    return value


class NotificationMessage(BaseModel):
    """What one notification says; built by the workflow (no secret, no wall clock)."""

    event: NotificationEvent
    idempotency_key: str
    """``<workflow id>@<first run id>/<event>/batch-<n>/<sequence>``: the same for every
    attempt (and every receiver) of one notification, different for the next; receivers
    dedupe on it (it is also the ``Idempotency-Key`` header)."""
    upgrade_id: str
    """The workflow id."""
    cluster: str
    from_revision: str | None = None
    to_revision: str
    batch: int | None = None
    phase: str
    summary: str
    verdict: str | None = None
    """The gate's verdict (``FAIL``, ``INCONCLUSIVE``) when a gate decided."""
    reasons: list[str] = Field(default_factory=list)
    """The verdict's (or the failure's) reasons, the first :data:`MAX_REASONS`."""
    omitted_reasons: int = 0
    next_steps: str
    """What a person should do now."""
    occurred_at: datetime
    """The workflow's time of the event."""


class NotifyInput(BaseModel):
    """Argument of the ``notify`` activity: the receiver (by reference) and the message."""

    receiver: NotificationSpec
    message: NotificationMessage


class NotifyResult(BaseModel):
    """What the receiver answered (never the URL)."""

    status_code: int
    attempt: int


class NotificationRecord(BaseModel):
    """One notification sent (or being sent) to one receiver, in the upgrade's progress."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    event: NotificationEvent
    receiver: str
    batch: int | None = None
    key: str
    status: Literal["sending", "delivered", "failed"] = "sending"
    detail: str = ""
    """``HTTP 200 (attempt 1)``, or why it failed (the URL masked)."""
