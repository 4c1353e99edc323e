"""``watch=true`` streams: newline-delimited JSON events from a resourceVersion on.

Without a resourceVersion (or with ``"0"``) the stream starts with a synthetic ADDED event
per current object, as the API server's watch cache does. With a selector, an object that
stops matching is reported DELETED and one that starts matching ADDED, so a client's view
stays consistent. A resourceVersion older than the store's history yields one ERROR event
carrying a 410 Expired Status, which clients answer by listing again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from istio_sandbox.api.errors import ApiError, status_body
from istio_sandbox.api.lists import Filter, matching
from istio_sandbox.api.tables import table, wants_table
from istio_sandbox.api.target import Target
from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Gone, Obj, Store, WatchEvent

BOOKMARK_INTERVAL_S = 1.0
"""How often an idle stream with ``allowWatchBookmarks`` gets a BOOKMARK event."""
_IDLE_CHECK_S = 1.0


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class _View:
    """Which objects the client currently sees, to translate events under a selector."""

    def __init__(self, target: Target, flt: Filter) -> None:
        self.target = target
        self.flt = flt
        self.visible: set[tuple[str, str]] = set()

    def in_scope(self, ev: WatchEvent) -> bool:
        if ev.rt is not self.target.rt:
            return False
        ns = (ev.obj.get("metadata") or {}).get("namespace", "")
        return not self.target.namespace or ns == self.target.namespace

    def translate(self, ev: WatchEvent) -> str | None:
        """The event type to send for ``ev``, or None to send nothing."""
        if not self.in_scope(ev):
            return None
        if self.flt.empty:
            return ev.type
        key = _key(ev.obj)
        was, now = key in self.visible, self.flt.matches(ev.obj)
        if ev.type == "DELETED":
            self.visible.discard(key)
            return "DELETED" if was or now else None
        if now:
            self.visible.add(key)
            return "MODIFIED" if was and ev.type == "MODIFIED" else "ADDED"
        if was:
            self.visible.discard(key)
            return "DELETED"
        return None


async def serve_watch(
    request: web.Request,
    store: Store,
    target: Target,
    *,
    flt: Filter | None = None,
    present: Callable[[Obj], Obj] | None = None,
    view_rt: ResourceType | None = None,
) -> web.StreamResponse:
    """Stream watch events for ``target`` until timeout or client disconnect.

    ``present`` converts stored objects to the form the client asked for, and ``view_rt``
    is that form's type (an API served from another's storage, as ``events.k8s.io``
    Events), with ``flt`` its selectors already in the storage's field names.
    """
    query = request.query
    if flt is None:
        flt = Filter.from_query(query, target.rt)
    shown = view_rt or target.rt
    as_table = wants_table(request.headers.get("Accept", ""))
    include = query.get("includeObject", "")
    bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
    timeout = _timeout(query.get("timeoutSeconds"))
    rv_param = query.get("resourceVersion", "")
    try:
        start_rv = int(rv_param) if rv_param not in ("", "0") else None
    except ValueError:
        raise ApiError.bad_request(f"resourceVersion: Invalid value: {rv_param!r}") from None

    queue = store.subscribe()
    view = _View(target, flt)
    first_row = [True]

    def encode(kind: str, obj: Obj) -> bytes:
        if present is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = present(obj)
        if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = table(shown, [obj], include_object=include, with_columns=first_row[0])
            first_row[0] = False
        return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await response.prepare(request)
        chunks: list[bytes] = []
        last_rv = store.resource_version
        if start_rv is None:
            for obj in matching(store, target, flt):
                view.visible.add(_key(obj))
                chunks.append(encode("ADDED", obj))
        else:
            # Objects the client saw when it listed at start_rv: approximated by the current
            # matching set, which is exact unless history events below change membership.
            view.visible = {_key(o) for o in matching(store, target, flt)}
            try:
                history = store.events_since(start_rv)
            except Gone as err:
                body = status_body(410, err.message, "Expired")
                await response.write(encode("ERROR", body))
                return response
            for ev in history:
                kind = view.translate(ev)
                if kind is not None:
                    chunks.append(encode(kind, ev.obj))
            last_rv = max(start_rv, store.resource_version)
        if chunks:
            await response.write(b"".join(chunks))
        await _stream_live(
            request, response, queue, view, encode, last_rv, timeout, bookmarks, shown
        )
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unsubscribe(queue)
    return response


async def _stream_live(
    request: web.Request,
    response: web.StreamResponse,
    queue: asyncio.Queue[WatchEvent],
    view: _View,
    encode: Callable[[str, Obj], bytes],
    last_rv: int,
    timeout_s: float | None,
    bookmarks: bool,
    shown: ResourceType,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s if timeout_s is not None else None
    last_bookmark = loop.time()
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        wait = _IDLE_CHECK_S if deadline is None else min(_IDLE_CHECK_S, deadline - now)
        try:
            ev = await asyncio.wait_for(queue.get(), wait)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            if bookmarks and loop.time() - last_bookmark >= BOOKMARK_INTERVAL_S:
                await response.write(encode("BOOKMARK", _bookmark(shown, last_rv)))
                last_bookmark = loop.time()
            continue
        batch = [ev]
        while not queue.empty():
            batch.append(queue.get_nowait())
        chunks = []
        for item in batch:
            if item.rv <= last_rv:
                continue
            last_rv = item.rv
            kind = view.translate(item)
            if kind is not None:
                chunks.append(encode(kind, item.obj))
        if chunks:
            await response.write(b"".join(chunks))


def _bookmark(rt: ResourceType, rv: int) -> dict[str, Any]:
    return {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"resourceVersion": str(rv)},
    }


def _timeout(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError.bad_request(f"timeoutSeconds: Invalid value: {raw!r}") from None
    return max(value, 0.0)
