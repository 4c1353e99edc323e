"""Protobuf request bodies of the few kinds ``kubectl create <kind>`` sends that way.

kubectl's imperative generators (``kubectl create namespace|configmap|secret|serviceaccount|
role|clusterrole|rolebinding|clusterrolebinding``) and ``kubectl auth can-i`` (access reviews)
post ``application/vnd.kubernetes.protobuf``: the magic ``k8s\\0`` and a ``runtime.Unknown``
envelope around the object's own message. The schemas below are the field numbers of
``k8s.io/api`` ``generated.proto`` for those kinds and the ``ObjectMeta`` fields a create can
carry; anything else still answers 415 so the client uses JSON (``create -f``, ``apply``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from istio_sandbox.api.errors import ApiError

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# Field number → (JSON name, how to decode). "str"/"bool" are scalars,
# "map"/"bmap" maps of string to string/bytes, "strs" repeated strings, a dict a message.
_Schema = dict[int, tuple[str, Any]]
_OWNER_REF: _Schema = {
    1: ("kind", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: _Schema = {
    1: ("name", "str"),
    2: ("generateName", "str"),
    3: ("namespace", "str"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", [_OWNER_REF]),
    14: ("finalizers", "strs"),
}
_LOCAL_REF: _Schema = {1: ("name", "str")}
_LABEL_SELECTOR: _Schema = {
    1: ("matchLabels", "map"),
    2: ("matchExpressions", [{1: ("key", "str"), 2: ("operator", "str"), 3: ("values", "strs")}]),
}
_POLICY_RULE: _Schema = {
    1: ("verbs", "strs"),
    2: ("apiGroups", "strs"),
    3: ("resources", "strs"),
    4: ("resourceNames", "strs"),
    5: ("nonResourceURLs", "strs"),
}
_SUBJECT: _Schema = {
    1: ("kind", "str"),
    2: ("apiGroup", "str"),
    3: ("name", "str"),
    4: ("namespace", "str"),
}
_ROLE_REF: _Schema = {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")}
_BINDING: _Schema = {
    1: ("metadata", _OBJECT_META),
    2: ("subjects", [_SUBJECT]),
    3: ("roleRef", _ROLE_REF),
}
_RESOURCE_ATTRIBUTES: _Schema = {
    1: ("namespace", "str"),
    2: ("verb", "str"),
    3: ("group", "str"),
    4: ("version", "str"),
    5: ("resource", "str"),
    6: ("subresource", "str"),
    7: ("name", "str"),
}
_NON_RESOURCE_ATTRIBUTES: _Schema = {1: ("path", "str"), 2: ("verb", "str")}
_SAR_SPEC: _Schema = {
    1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES),
    3: ("user", "str"),
    4: ("groups", "strs"),
    6: ("uid", "str"),
}
_RBAC = "rbac.authorization.k8s.io/v1"
_AUTHZ = "authorization.k8s.io/v1"
SCHEMAS: dict[tuple[str, str], _Schema] = {
    ("v1", "Namespace"): {1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("finalizers", "strs")})},
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "bmap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META),
        2: ("secrets", [{1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str")}]),
        3: ("imagePullSecrets", [_LOCAL_REF]),
        4: ("automountServiceAccountToken", "bool"),
    },
    (_RBAC, "Role"): {1: ("metadata", _OBJECT_META), 2: ("rules", [_POLICY_RULE])},
    (_RBAC, "ClusterRole"): {
        1: ("metadata", _OBJECT_META),
        2: ("rules", [_POLICY_RULE]),
        3: ("aggregationRule", {1: ("clusterRoleSelectors", [_LABEL_SELECTOR])}),
    },
    (_RBAC, "RoleBinding"): _BINDING,
    (_RBAC, "ClusterRoleBinding"): _BINDING,
    (_AUTHZ, "SelfSubjectAccessReview"): {
        1: ("metadata", _OBJECT_META),
        2: (
            "spec",
            {
                1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
                2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES),
            },
        ),
    },
    (_AUTHZ, "SelfSubjectRulesReview"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("namespace", "str")}),
    },
    (_AUTHZ, "SubjectAccessReview"): {1: ("metadata", _OBJECT_META), 2: ("spec", _SAR_SPEC)},
    (_AUTHZ, "LocalSubjectAccessReview"): {1: ("metadata", _OBJECT_META), 2: ("spec", _SAR_SPEC)},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, varint value or length-delimited bytes) of one message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: no field we read uses them
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _field(data: bytes, number: int) -> bytes:
    """The last length-delimited value of field ``number`` (empty when absent)."""
    found = b""
    for n, raw in _fields(data):
        if n == number and isinstance(raw, bytes):
            found = raw
    return found


def _message(data: bytes, schema: _Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind in ("map", "bmap"):
            assert isinstance(raw, bytes)
            key, value = _field(raw, 1).decode(), _field(raw, 2)
            out.setdefault(name, {})[key] = (
                value.decode() if kind == "map" else base64.b64encode(value).decode()
            )
        elif kind == "strs":
            assert isinstance(raw, bytes)
            out.setdefault(name, []).append(raw.decode())
        elif isinstance(kind, list):
            assert isinstance(raw, bytes)
            out.setdefault(name, []).append(_message(raw, kind[0]))
        elif isinstance(kind, dict):
            assert isinstance(raw, bytes)
            out[name] = _message(raw, kind)
        elif kind == "str":
            assert isinstance(raw, bytes)
            out[name] = raw.decode()
        elif kind == "bool":
            out[name] = bool(raw)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind in :data:`SCHEMAS`.

    Raises:
        ApiError: 415 for other kinds (the client then sends JSON), 400 for a corrupt body.
    """
    if not body.startswith(_MAGIC):
        raise ApiError.bad_request("protobuf body without the k8s\\0 prefix")
    try:
        envelope = body[len(_MAGIC) :]
        type_meta = _field(envelope, 1)
        api_version, kind = _field(type_meta, 1).decode(), _field(type_meta, 2).decode()
        schema = SCHEMAS.get((api_version, kind))
        if schema is None:
            raise ApiError(
                415,
                f"the sandbox decodes protobuf bodies of "
                f"{', '.join(k for _, k in SCHEMAS)} only, not {kind or 'this'}; send JSON "
                "(kubectl create -f FILE or kubectl apply)",
            )
        obj = _message(_field(envelope, 2), schema)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError.bad_request(f"corrupt protobuf body: {err}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
