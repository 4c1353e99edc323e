"""Validation of custom resources against their CRD's structural schema.

What apiextensions-apiserver checks on create and update (``staging/src/k8s.io/
apiextensions-apiserver/pkg/apiserver/schema`` and ``.../validation``, via kube-openapi's
``validate``): ``type`` (``integer`` accepts no fraction, ``number`` any number,
``x-kubernetes-int-or-string`` either), ``required``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``, ``nullable``. Fields the
schema does not know are pruned, or, with ``fieldValidation=Strict`` (what ``kubectl`` sends
since 1.27), refused as ``unknown field``. ``x-kubernetes-preserve-unknown-fields`` keeps
what it covers unchecked. ``metadata``, ``apiVersion`` and ``kind`` are the API server's own.
"""

from __future__ import annotations

import re
from typing import Any

from istio_sandbox.api.validation import FieldError

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}
_ROOT_OWN = {"apiVersion", "kind", "metadata"}


def _type_ok(schema: dict[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    kind = schema.get("type")
    if not kind:
        return True
    if kind in {"integer", "number"} and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def schema_errors(
    schema: dict[str, Any], obj: Any, *, strict: bool, path: str = ""
) -> list[FieldError]:
    """Why ``obj`` does not conform to ``schema``; prunes unknown fields unless ``strict``."""
    errors: list[FieldError] = []
    _check(schema, obj, path, strict, errors, root=not path)
    return errors


def _check(
    schema: dict[str, Any],
    value: Any,
    path: str,
    strict: bool,
    errors: list[FieldError],
    *,
    root: bool = False,
) -> None:
    shown = path or "<root>"
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errors.append(FieldError(shown, value, f"must be of type {schema['type']}"))
        return
    if not _type_ok(schema, value):
        kind = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        errors.append(FieldError(shown, value, f"must be of type {kind}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
        errors.append(FieldError(shown, value, f"supported values: {allowed}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(
                FieldError(shown, value, f"should be greater than or equal to {schema['minimum']}")
            )
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(
                FieldError(shown, value, f"should be less than or equal to {schema['maximum']}")
            )
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                FieldError(shown, value, f"should be at least {schema['minLength']} chars long")
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError(shown, value, f"may not be more than {schema['maxLength']} bytes")
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(FieldError(shown, value, f"should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                FieldError(shown, value, f"should have at least {schema['minItems']} items")
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError(shown, value, f"must have at most {schema['maxItems']} items"))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _check(items, item, f"{path}[{i}]", strict, errors)
    if isinstance(value, dict):
        _check_object(schema, value, path, strict, errors, root=root)


def _check_object(
    schema: dict[str, Any],
    value: dict[str, Any],
    path: str,
    strict: bool,
    errors: list[FieldError],
    *,
    root: bool,
) -> None:
    properties: dict[str, Any] = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in value:
            errors.append(FieldError(f"{path}.{name}" if path else name, None, "", required=True))
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    for name in list(value):
        child = f"{path}.{name}" if path else name
        if root and name in _ROOT_OWN:
            continue
        if name in properties:
            _check(properties[name], value[name], child, strict, errors)
        elif isinstance(extra, dict):
            _check(extra, value[name], child, strict, errors)
        elif preserve or extra is True:
            continue
        elif strict:
            errors.append(_unknown(child))
        else:
            del value[name]  # pruned, as the API server prunes unknown fields


def _unknown(path: str) -> FieldError:
    """``unknown field "spec.x"``, the strict field validation's wording."""
    return _UnknownField(path, None, "")


class _UnknownField(FieldError):
    @property
    def reason(self) -> str:
        return "FieldValueInvalid"

    @property
    def message(self) -> str:
        return f'unknown field "{self.field}"'
