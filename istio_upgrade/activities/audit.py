"""What a mutating activity tells the cluster: heartbeats per write and an Event per object.

An SRE reading ``kubectl get events -n shop`` (or ``kubectl describe deploy``) should see who
changed the namespace or workload and why, not only the upgrade's history in Temporal. (kubectl
``describe ns`` lists no Events at all.) A mutating activity runs its writes inside
:func:`writing`, which the Kubernetes client (``kube_client.Kube``) consults after every
successful write: it heartbeats (so a cancellation or a worker shutdown reaches the activity
between two writes) and records a ``core/v1`` Event on the object, naming the upgrade, the
batch and the step. An Event that cannot be written (no RBAC for events, API trouble) is
logged and never fails the step: the history stays the record.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger(__name__)

COMPONENT = "istio-upgrade"
"""``source.component`` / ``reportingComponent`` of the Events."""


@dataclass(frozen=True)
class WriteContext:
    """The step whose writes are being made."""

    upgrade_id: str
    """The upgrade (workflow id) the step belongs to."""
    reason: str
    """The Event's reason, CamelCase (``Relabeled``, ``Restarted``, ``RevisionInstalled``)."""
    action: str
    """What the step does, in words (the Event's message)."""
    batch: int | None = None
    tick: Callable[[], None] | None = None
    """Called after every write: the activity's heartbeat."""


_CURRENT: contextvars.ContextVar[WriteContext | None] = contextvars.ContextVar(
    "istio_upgrade_write_context", default=None
)


@contextlib.contextmanager
def writing(context: WriteContext) -> Iterator[None]:
    """Make ``context`` the step of every write of this thread (and of what it submits with
    :func:`run_in_context`)."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> WriteContext | None:
    return _CURRENT.get()


def run_in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` bound to the caller's context, for a thread pool of the activity (no heartbeats:
    the SDK takes them from the activity's own thread only)."""
    ctx = contextvars.copy_context()
    step = ctx.get(_CURRENT)
    if step is not None:
        ctx.run(_CURRENT.set, WriteContext(step.upgrade_id, step.reason, step.action, step.batch))
    return lambda *args: ctx.run(fn, *args)


_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")


def event_for(obj: dict[str, Any], context: WriteContext) -> dict[str, Any] | None:
    """The Event recording that ``context``'s step wrote ``obj`` (the server's answer)."""
    meta = obj.get("metadata") or {}
    name, kind = meta.get("name"), obj.get("kind")
    if not name or not kind or kind == "Event":
        return None
    namespace = meta.get("namespace")
    if kind == "Namespace":
        # A Namespace's Events live in it, so ``kubectl get events -n shop`` shows who changed
        # it; the API server accepts an Event whose namespace is its object's namespace
        # (``pkg/apis/core/validation/events.go``), so the Namespace names itself there.
        namespace = name
    # Other cluster-scoped objects' Events go to ``default``, as client-go records them.
    event_namespace = namespace or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch = f", batch {context.batch}" if context.batch is not None else ""
    base = _NAME_UNSAFE.sub("-", f"{name}.istio-upgrade".lower())[:200].strip("-.")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{base}.{uuid.uuid4().hex[:10]}",
            "namespace": event_namespace,
            "labels": {"app.kubernetes.io/managed-by": COMPONENT},
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": kind,
            "name": name,
            "namespace": namespace or "",
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": context.reason,
        "message": f"{context.action} by upgrade {context.upgrade_id}{batch}",
        "type": "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": context.upgrade_id[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
