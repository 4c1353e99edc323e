"""Listing: selectors, ``limit``/``continue`` paging and the ``<Kind>List`` envelope."""

from __future__ import annotations

import base64
import binascii
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
from istio_sandbox.store import Obj, Store


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


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "start": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        ns, name = data["start"]
        return str(ns), str(name)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError.bad_request(
            "continue key is not valid: pass the value of metadata.continue from the previous page"
        ) from None


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def page(items: list[Obj], query: MultiMapping[str], rv: int) -> tuple[list[Obj], dict[str, Any]]:
    """Apply ``continue`` and ``limit``; returns the page and the list ``metadata``.

    Pages continue after the last key served, so objects that exist throughout the listing
    appear exactly once even when others are created or deleted between pages.
    """
    token = query.get("continue")
    if token:
        start = _decode_continue(token)
        items = [o for o in items if _key(o) > start]
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    raw_limit = query.get("limit")
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ApiError.bad_request(
                f"limit: Invalid value: {raw_limit!r}: must be an integer"
            ) from None
        if 0 < limit < len(items):
            meta["continue"] = _encode_continue(rv, _key(items[limit - 1]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
    return items, meta


def list_body(rt: ResourceType, items: list[Obj], meta: dict[str, Any]) -> dict[str, Any]:
    return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}
