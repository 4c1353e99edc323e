"""The patch formats of ``PATCH`` requests: JSON merge, strategic merge and JSON patch.

Strategic merge follows the Kubernetes rules for the fields workloads and webhooks use:
maps merge, ``null`` deletes, and the lists below merge element-wise by their merge key.
Other lists are replaced. ``$setElementOrder``/``$retainKeys`` directives are accepted and
ignored; ``$patch: delete`` on a list element removes it and ``$patch: replace`` replaces.
"""

from __future__ import annotations

import copy
from typing import Any

# Field name → merge key, from the patchMergeKey tags of the core and apps API types.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "webhooks": ("name",),
    "topologySpreadConstraints": ("topologyKey",),
    "tolerations": ("key",),
}
# Lists of scalars that strategic merge unions instead of replacing.
MERGED_SCALAR_LISTS = frozenset({"finalizers"})


class PatchError(ValueError):
    """A patch that cannot be applied; ``code`` is the HTTP status to answer."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


# -- RFC 7386 ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386) and return the result; inputs are not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- strategic merge patch ----------------------------------------------------------------------


def _merge_key(field: str, items: list[Any]) -> str | None:
    keys = MERGE_KEYS.get(field)
    if not keys:
        return None
    dicts = [i for i in items if isinstance(i, dict)]
    for key in keys:
        if dicts and all(key in d for d in dicts):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch and return the result; inputs are not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _merge_list(key, out.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = value
    for key, value in patch.items():
        # kubectl sends removals from merged scalar lists as "$deleteFromPrimitiveList/<field>".
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in value]
    return out


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if field in MERGED_SCALAR_LISTS and isinstance(current, list):
        return list(current) + [v for v in patch if v not in current]
    if not isinstance(current, list):
        return [strip_directives(copy.deepcopy(v)) for v in patch if not _is_delete(v)]
    key = _merge_key(field, current + patch)
    if key is None:
        if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
            return [
                strip_directives(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)
            ]
        return [strip_directives(copy.deepcopy(v)) for v in patch]
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and len(item) == 1:
            return [
                strip_directives(copy.deepcopy(v))
                for v in patch
                if not (isinstance(v, dict) and "$patch" in v)
            ]
        idx = next((i for i, cur in enumerate(out) if cur.get(key) == item.get(key)), None)
        if _is_delete(item):
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strip_directives(copy.deepcopy(item)))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


def strip_directives(value: Any) -> Any:
    """Drop ``$``-prefixed directive keys from a value that is inserted as is."""
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


# -- RFC 6902 ---------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'", code=400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise PatchError(f"jsonpatch: doc is missing path: {path!r}")
    return cur


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"jsonpatch: doc is missing path: {path!r}")


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"jsonpatch: index out of range in path {path!r}")
    else:
        raise PatchError(f"jsonpatch: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("jsonpatch: cannot remove the whole document")
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent.pop(int(last))
    else:
        raise PatchError(f"jsonpatch: doc is missing path: {path!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """Apply a JSON patch (RFC 6902) and return the result; ``target`` is not modified.

    Raises:
        PatchError: a malformed operation (400) or one that does not apply (422).
    """
    if not isinstance(ops, list):
        raise PatchError("json patch must be a JSON array of operations", code=400)
    doc = copy.deepcopy(target)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"json patch operation {i} needs 'op' and 'path'", code=400)
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"json patch operation {i} ({kind}) needs 'value'", code=400)
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = _add(_remove(doc, path), path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"json patch operation {i} ({kind}) needs 'from'", code=400)
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"jsonpatch: testing value {path!r} failed")
        else:
            raise PatchError(f"json patch operation {i}: unknown op {kind!r}", code=400)
    return doc
