"""Server-side apply (``application/apply-patch+yaml``), approximated.

The applied configuration is merged into the live object with strategic-merge rules, and the
manager's field set is recorded in ``metadata.managedFields`` as ``FieldsV1``. Fields the
same manager applied before and no longer applies are removed (map fields only), which is
what makes re-applying a smaller manifest shrink the object. Conflicts between managers are
not detected: every apply behaves as if ``force=true``.
"""

from __future__ import annotations

import json
from typing import Any

from istio_sandbox.api.patch import MERGE_KEYS, strategic_merge_patch
from istio_sandbox.store import Obj, now_iso

# Server-owned metadata never counted as applied, never pruned.
_SERVER_METADATA = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}
)


def fields_v1(value: Any, field: str = "") -> dict[str, Any]:
    """The ``FieldsV1`` set of a (partial) object: ``f:`` map keys and ``k:`` list keys."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if field == "metadata" and key in _SERVER_METADATA:
                continue
            out[f"f:{key}"] = fields_v1(sub, key)
        return out
    if isinstance(value, list):
        keys = MERGE_KEYS.get(field, ())
        out = {}
        for item in value:
            if not isinstance(item, dict):
                continue
            key = next((k for k in keys if k in item), None)
            if key is None:
                return {}
            entry = fields_v1(item, "")
            entry["."] = {}
            out[f"k:{json.dumps({key: item[key]}, separators=(',', ':'))}"] = entry
        return out
    return {}


def _prune(obj: Any, previous: dict[str, Any], current: dict[str, Any], depth: int = 0) -> None:
    if not isinstance(obj, dict):
        return
    for fkey, sub in previous.items():
        if not fkey.startswith("f:"):
            continue
        key = fkey[2:]
        if key not in obj or (depth == 0 and key in ("apiVersion", "kind", "metadata", "status")):
            if key == "metadata" and fkey in current and isinstance(sub, dict):
                _prune(obj.get(key), sub, current[fkey], depth + 1)
            continue
        if fkey not in current:
            del obj[key]
        elif sub:
            _prune(obj[key], sub, current[fkey], depth + 1)


def apply(current: Obj | None, applied: Obj, manager: str, api_version: str) -> Obj:
    """The object after ``manager`` applies ``applied`` onto ``current`` (None: create).

    ``status`` in the applied configuration is ignored, as for any main-resource write.
    """
    applied = {k: v for k, v in applied.items() if k != "status"}
    fields = fields_v1(applied)
    if current is None:
        merged: Obj = strategic_merge_patch({}, applied)
        entries: list[dict[str, Any]] = []
    else:
        merged = strategic_merge_patch(current, applied)
        entries = list((current.get("metadata") or {}).get("managedFields") or [])
        previous = next(
            (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"),
            None,
        )
        if previous is not None:
            _prune(merged, previous.get("fieldsV1") or {}, fields)
    entries = [
        e for e in entries if not (e.get("manager") == manager and e.get("operation") == "Apply")
    ]
    entries.append(
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": now_iso(),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
    )
    merged.setdefault("metadata", {})["managedFields"] = entries
    return merged


def record_update(obj: Obj, manager: str, api_version: str, subresource: str = "") -> None:
    """Note an ``Update`` by ``manager`` in ``managedFields`` (fields are not tracked)."""
    meta = obj.setdefault("metadata", {})
    entries = [
        e
        for e in meta.get("managedFields") or []
        if not (
            e.get("manager") == manager
            and e.get("operation") == "Update"
            and e.get("subresource", "") == subresource
        )
    ]
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": now_iso(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    }
    if subresource:
        entry["subresource"] = subresource
    entries.append(entry)
    meta["managedFields"] = entries
