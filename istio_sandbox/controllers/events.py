"""``core/v1`` Events as kubelet and the controller manager record them.

Repeats of the same (object, reason, message) bump ``count`` and ``lastTimestamp`` instead of
creating a new Event, as client-go's event correlator does; the oldest Events are deleted
once more than ``max_events`` exist, so a 20,000-pod scenario stays cheap.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable

from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import NotFound, Obj, Store, now_iso

EVENTS = BY_KEY["/events"]

MAX_EVENTS = 10_000

KUBELET = "kubelet"
SCHEDULER = "default-scheduler"
REPLICASET_CONTROLLER = "replicaset-controller"
DEPLOYMENT_CONTROLLER = "deployment-controller"
STATEFULSET_CONTROLLER = "statefulset-controller"
DAEMONSET_CONTROLLER = "daemonset-controller"
JOB_CONTROLLER = "job-controller"

_Key = tuple[str, str, str, str, str, str]


class EventRecorder:
    """Writes Events for objects into the store, deduplicated and bounded."""

    def __init__(self, store: Store, max_events: int = MAX_EVENTS) -> None:
        self._store = store
        self._max = max_events
        self._names: OrderedDict[_Key, tuple[str, str]] = OrderedDict()
        self._seq = itertools.count()

    def record(
        self,
        obj: Obj,
        reason: str,
        message: str,
        *,
        type_: str = "Normal",
        component: str = KUBELET,
        field_path: str = "",
    ) -> None:
        """Record that ``reason`` happened to ``obj``.

        Args:
            obj: The involved object (any namespaced Kubernetes object).
            reason: CamelCase reason, e.g. ``FailedCreate``.
            message: Human readable detail.
            type_: ``Normal`` or ``Warning``.
            component: The reporting component shown in ``kubectl describe`` (``From``).
            field_path: e.g. ``spec.containers{istio-proxy}`` for container events.
        """
        m = obj.get("metadata") or {}
        ns = m.get("namespace") or "default"
        key: _Key = (ns, obj.get("kind", ""), m.get("name", ""), reason, message, field_path)
        now = now_iso()
        known = self._names.get(key)
        if known is not None:
            try:
                self._store.mutate(EVENTS, known[0], known[1], _bump(now))
                self._names.move_to_end(key)
                return
            except NotFound:
                del self._names[key]
        name = f"{m.get('name', 'unknown')}.{time.time_ns() + next(self._seq):x}"
        involved: Obj = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": m.get("name", ""),
            "namespace": ns,
        }
        if m.get("uid"):
            involved["uid"] = m["uid"]
        if m.get("resourceVersion"):
            involved["resourceVersion"] = m["resourceVersion"]
        if field_path:
            involved["fieldPath"] = field_path
        event: Obj = {
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "",
        }
        self._store.create(EVENTS, event, copy_result=False)
        self._names[key] = (ns, name)
        while len(self._names) > self._max:
            _, (old_ns, old_name) = self._names.popitem(last=False)
            with contextlib.suppress(NotFound):
                self._store.delete(EVENTS, old_ns, old_name)


def _bump(now: str) -> Callable[[Obj], None]:
    def fn(ev: Obj) -> None:
        ev["count"] = int(ev.get("count") or 1) + 1
        ev["lastTimestamp"] = now

    return fn
