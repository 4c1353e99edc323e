"""Listing: selectors, ``limit``/``continue`` paging and the ``<Kind>List`` envelope."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from istio_sandbox.api.errors import ApiError
from istio_sandbox.api.selectors import (
    FieldSelector,
    Selector,
    SelectorError,
    parse_field_selector,
    parse_selector,
)
from istio_sandbox.api.target import Target
from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Key, Obj, Store


@dataclass(frozen=True)
class Filter:
    """The label and field selectors of one list or watch request."""

    labels: Selector
    fields: FieldSelector

    @classmethod
    def from_query(cls, query: MultiMapping[str], rt: ResourceType) -> Filter:
        """Parse ``labelSelector``/``fieldSelector``; a bad selector is a 400 BadRequest."""
        try:
            labels = parse_selector(query.get("labelSelector"))
        except SelectorError as err:
            raise ApiError.bad_request(str(err)) from None
        try:
            fields = parse_field_selector(query.get("fieldSelector"), rt.plural)
        except SelectorError as err:
            raise ApiError.bad_request(str(err)) from None
        return cls(labels, fields)

    @property
    def empty(self) -> bool:
        return self.labels.empty and not self.fields.requirements

    def matches(self, obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels")
        return self.labels.matches(labels) and self.fields.matches(obj)


def matching(store: Store, target: Target, flt: Filter) -> list[Obj]:
    """Live (uncopied) objects a list request selects, in namespace/name order.

    The result must be serialized before the event loop yields: it aliases the store.
    """
    rt = target.rt
    name = flt.fields.value_of("metadata.name")
    pinned_ns = flt.fields.value_of("metadata.namespace")
    namespace = target.namespace or (pinned_ns if rt.namespaced else "") or ""
    if name is not None and (namespace or not rt.namespaced):
        # Point lookup: kubectl rollout status / delete --wait select one object by name.
        found = store.try_get(rt, namespace, name)
        return [found] if found is not None and flt.matches(found) else []
    predicate: Callable[[Obj], bool] | None = None if flt.empty else flt.matches
    return store.list(rt, namespace or None, predicate, copy_objects=False)


# The API server's continue token (k8s.io/apiserver/pkg/storage/continue.go): base64 of
# {"v": "meta.k8s.io/v1", "rv": <the list's resourceVersion>, "start": <where to go on>}.
# ``rv`` -1 continues from the current state (the token a 410 Expired answer carries).
_CONTINUE_VERSION = "meta.k8s.io/v1"
_INCONSISTENT = -1
_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def _encode_continue(rv: int, key: Key) -> str:
    data = {"v": _CONTINUE_VERSION, "rv": rv, "start": list(key)}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, Key]:
    """(resourceVersion, last key served) of a continue token; a bad one is a 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        ns, name = data["start"]
        rv = int(data.get("rv", _INCONSISTENT))
        if data.get("v", _CONTINUE_VERSION) != _CONTINUE_VERSION:
            raise ValueError(data.get("v"))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError.bad_request(
            "continue key is not valid: pass the value of metadata.continue from the previous page"
        ) from None
    if rv == 0 or rv < _INCONSISTENT:
        raise ApiError.bad_request(
            f"continue key is not valid: incorrect encoded start resourceVersion "
            f"(version {_CONTINUE_VERSION})"
        )
    return rv, (str(ns), str(name))


def _limit(query: MultiMapping[str]) -> int:
    raw = query.get("limit")
    if not raw:
        return 0
    try:
        return max(int(raw), 0)
    except ValueError:
        raise ApiError.bad_request(f"limit: Invalid value: {raw!r}: must be an integer") from None


def list_page(
    store: Store, target: Target, flt: Filter, query: MultiMapping[str]
) -> tuple[list[Obj], dict[str, Any]]:
    """The objects one list request selects (live, uncopied: serialize before yielding) and
    the list ``metadata``, with ``limit``/``continue`` paging as the API server pages.

    The first page of a truncated list keeps what it saw; every next page is served from
    it, at the first page's ``resourceVersion``, so each object appears exactly once and as it
    was then, however the cluster changes between pages. ``remainingItemCount`` is given only
    without selectors (etcd counts keys, not matches). A token whose snapshot expired (5
    minutes, or a restarted sandbox that changed since) is 410 Expired with a token that goes
    on from the current state, as after etcd's compaction.
    """
    token = query.get("continue")
    limit = _limit(query)
    rt = target.rt
    if token and query.get("resourceVersion"):
        raise ApiError.bad_request("specifying resource version is not allowed when using continue")
    name = flt.fields.value_of("metadata.name")
    pinned_ns = flt.fields.value_of("metadata.namespace")
    namespace = target.namespace or (pinned_ns if rt.namespaced else "") or None
    if not token and name is not None and (namespace or not rt.namespaced):
        # Point lookup: kubectl rollout status / delete --wait select one object by name.
        rv = store.resource_version
        return matching(store, target, flt)[: limit or None], {"resourceVersion": str(rv)}
    if token:
        list_rv, start = _decode_continue(token)
        if list_rv == _INCONSISTENT:
            list_rv = store.resource_version
            keys, objs = store.snapshot(rt, namespace)
        else:
            found = store.list_snapshot(rt, namespace, list_rv)
            if found is None:
                raise ApiError(
                    410,
                    _EXPIRED,
                    reason="Expired",
                    list_meta={"continue": _encode_continue(_INCONSISTENT, start)},
                )
            keys, objs = found
        i = bisect.bisect_right(keys, start)
    else:
        list_rv = store.resource_version
        keys, objs = store.snapshot(rt, namespace)
        i = 0
    n = len(keys)
    if flt.empty:
        stop = min(n, i + limit) if limit else n
        items = objs[i:stop]
    else:
        items = []
        stop = i
        while stop < n and (not limit or len(items) < limit):
            if flt.matches(objs[stop]):
                items.append(objs[stop])
            stop += 1
    # ListMeta's field order: resourceVersion, continue, remainingItemCount.
    meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
    if stop < n:
        # More keys remain (not necessarily matching: the API server does not look ahead).
        meta["continue"] = _encode_continue(list_rv, keys[stop - 1])
        if flt.empty:
            meta["remainingItemCount"] = n - stop
        if not token:
            store.keep_list_snapshot(rt, namespace, list_rv, keys, objs)
    return items, meta


def list_bytes(store: Store, rt: ResourceType, items: list[Obj], meta: dict[str, Any]) -> bytes:
    """The ``<Kind>List`` body as compact JSON, from each object's cached encoding."""
    head = {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta}
    prefix = Store.to_json(head)[:-1]
    return b"".join((prefix, b',"items":[', b",".join(store.encoded(rt, o) for o in items), b"]}"))


def list_body(rt: ResourceType, items: list[Obj], meta: dict[str, Any]) -> dict[str, Any]:
    return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}
