"""The controllers' shared machinery: an informer-like cache, owner index, work queue, timers.

The store calls :meth:`Runtime.on_change` synchronously on every write; that only records
what became dirty. The controller loop then reconciles dirty objects and fires due timers,
so the cost of a tick follows the number of changes, never the size of the cluster.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.events import EventRecorder
from istio_sandbox.controllers.objects import (
    DAEMONSETS,
    DEPLOYMENTS,
    GATEWAYS,
    JOBS,
    PODS,
    REPLICASETS,
    ROLLOUTS,
    STATEFULSETS,
    controller_of,
)
from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Obj, Store, WatchEvent, clone

Key = tuple[str, str, str]
"""(resource type key, namespace, name)."""

CACHED_TYPES: tuple[ResourceType, ...] = (
    PODS,
    REPLICASETS,
    DEPLOYMENTS,
    STATEFULSETS,
    DAEMONSETS,
    JOBS,
    ROLLOUTS,
    GATEWAYS,
)
_CACHED_KEYS = frozenset(rt.key for rt in CACHED_TYPES)


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)


class Runtime:
    """State shared by every reconciler of one cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store: Store = cluster.store
        self.events = EventRecorder(cluster.store)
        self.cache: dict[str, dict[tuple[str, str], Obj]] = {rt.key: {} for rt in CACHED_TYPES}
        """Latest stored object per key; shared references, read-only for controllers."""
        self._by_namespace: dict[tuple[str, str], dict[str, Obj]] = {}
        """(type key, namespace) → name → object: the cache indexed by namespace."""
        self.children: dict[str, set[Key]] = {}
        """Owner uid → keys of the objects it controls."""
        self._owner_of: dict[Key, str] = {}
        self.dirty: set[Key] = set()
        """Objects waiting to be reconciled; ``_queue`` keeps them in arrival order."""
        self._queue: deque[Key] = deque()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.wake: Callable[[], None] = lambda: None
        """Set by the loop: called when new work arrives."""
        self.change_hooks: list[Callable[[WatchEvent], None]] = []

    # -- cache -----------------------------------------------------------------------------

    def prime(self) -> None:
        """Load what exists before the controllers started, and mark all of it dirty."""
        for rt in CACHED_TYPES:
            for obj in self.store.list(rt, copy_objects=False):
                self._index(rt.key, obj)
                m = obj["metadata"]
                self.mark(rt.key, m.get("namespace", ""), m["name"])

    def on_change(self, ev: WatchEvent) -> None:
        key = ev.rt.key
        if key in _CACHED_KEYS:
            m = ev.obj["metadata"]
            ns, name = m.get("namespace", ""), m["name"]
            if ev.type == "DELETED":
                self._unindex(key, ns, name)
                orphans = self.children.pop(m.get("uid", ""), set())
                if orphans:
                    self.collect_garbage(orphans)
            else:
                self._index(key, ev.obj)
            self.mark(key, ns, name)
            ref = controller_of(ev.obj)
            if ref is not None:
                owner_key = _owner_type_key(ref)
                if owner_key:
                    self.mark(owner_key, ns, str(ref.get("name", "")))
                    owner = self.cache[owner_key].get((ns, str(ref.get("name", ""))))
                    grand = controller_of(owner) if owner and ev.type == "DELETED" else None
                    if grand is not None and _owner_type_key(grand):
                        # A Recreate rollout waits for the last old pod to be gone.
                        self.mark(_owner_type_key(grand), ns, str(grand.get("name", "")))
        for hook in self.change_hooks:
            hook(ev)

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.cache[rt.key].get((namespace, name))

    def in_namespace(self, rt: ResourceType, namespace: str) -> list[Obj]:
        """Cached objects of ``rt`` in ``namespace`` (shared references, read-only)."""
        return list(self._by_namespace.get((rt.key, namespace), {}).values())

    def owned(self, owner: Obj, rt: ResourceType) -> list[Obj]:
        """Objects of type ``rt`` controlled by ``owner``, from the cache."""
        out = []
        for key in self.children.get(owner["metadata"].get("uid", ""), ()):
            if key[0] == rt.key:
                obj = self.cache[rt.key].get((key[1], key[2]))
                if obj is not None:
                    out.append(obj)
        return out

    def edit_status(self, rt: ResourceType, obj: Obj, fn: Callable[[Obj], None]) -> None:
        """Let ``fn`` edit a copy of ``obj``'s status (``metadata``/``spec`` are read-only)."""
        view: Obj = {
            "metadata": obj["metadata"],
            "spec": obj.get("spec") or {},
            "status": clone(obj.get("status") or {}),
        }
        fn(view)
        m = obj["metadata"]
        self.store.set_status(rt, m.get("namespace", ""), m["name"], view["status"])

    def all(self, rt: ResourceType) -> Iterator[Obj]:
        return iter(list(self.cache[rt.key].values()))

    def _index(self, key: str, obj: Obj) -> None:
        m = obj["metadata"]
        k: Key = (key, m.get("namespace", ""), m["name"])
        self.cache[key][(k[1], k[2])] = obj
        self._by_namespace.setdefault((key, k[1]), {})[k[2]] = obj
        ref = controller_of(obj)
        uid = str(ref.get("uid", "")) if ref else ""
        old = self._owner_of.get(k)
        if old == uid:
            return
        if old:
            self.children.get(old, set()).discard(k)
        if uid:
            self._owner_of[k] = uid
            self.children.setdefault(uid, set()).add(k)
        else:
            self._owner_of.pop(k, None)

    def _unindex(self, key: str, ns: str, name: str) -> None:
        self.cache[key].pop((ns, name), None)
        self._by_namespace.get((key, ns), {}).pop(name, None)
        old = self._owner_of.pop((key, ns, name), None)
        if old:
            self.children.get(old, set()).discard((key, ns, name))

    def collect_garbage(self, keys: set[Key]) -> None:
        """Delete what a deleted owner controlled (background cascading deletion)."""

        def run() -> None:
            for rt_key, ns, name in sorted(keys):
                rt = next(rt for rt in CACHED_TYPES if rt.key == rt_key)
                obj = self.cache[rt_key].get((ns, name))
                if obj is not None:
                    self.store.delete(rt, ns, name)

        # Deleting from inside a store notification would reorder watch events.
        self.after(0, run)

    # -- work queue and timers -----------------------------------------------------------------

    def mark(self, rt_key: str, namespace: str, name: str) -> None:
        key = (rt_key, namespace, name)
        if key not in self.dirty:
            self.dirty.add(key)
            self._queue.append(key)
        self.wake()

    def pop_dirty(self) -> Key:
        """The object that has waited longest for a reconcile."""
        key = self._queue.popleft()
        self.dirty.discard(key)
        return key

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the controller loop once ``delay_s`` seconds have passed."""
        heapq.heappush(self._timers, _Timer(time.monotonic() + delay_s, next(self._seq), fn))
        self.wake()

    def due_timers(self, limit: int) -> list[Callable[[], None]]:
        """Up to ``limit`` timers whose time has come, earliest first."""
        now = time.monotonic()
        out: list[Callable[[], None]] = []
        while self._timers and self._timers[0].due <= now and len(out) < limit:
            out.append(heapq.heappop(self._timers).fn)
        return out

    def next_due(self) -> float | None:
        return self._timers[0].due if self._timers else None


def _owner_type_key(ref: Obj) -> str:
    kind = ref.get("kind")
    for rt in CACHED_TYPES:
        if rt.kind == kind and rt.api_version == ref.get("apiVersion"):
            return rt.key
    return ""
