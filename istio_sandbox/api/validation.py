"""Kubernetes name and label validation, with the API server's own wording.

Pure functions: the HTTP layer turns the returned :class:`FieldError` list into a 422
``Invalid`` Status, and the selector parser reuses the key/value checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1035_LABEL_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = rf"({_QUALIFIED_NAME_FMT})?"

_DNS1123_LABEL = re.compile(rf"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL = re.compile(rf"^{_DNS1035_LABEL_FMT}$")
_QUALIFIED_NAME = re.compile(rf"^{_QUALIFIED_NAME_FMT}$")
_LABEL_VALUE = re.compile(rf"^{_LABEL_VALUE_FMT}$")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63


@dataclass(frozen=True)
class FieldError:
    """One invalid field, rendered like ``field.ErrorList`` entries of the API server."""

    field: str
    """JSON path of the field, e.g. ``metadata.labels``."""
    value: Any
    detail: str
    required: bool = False
    """``field.Required`` (``Required value``) rather than ``field.Invalid``."""

    @property
    def reason(self) -> str:
        return "FieldValueRequired" if self.required else "FieldValueInvalid"

    @property
    def message(self) -> str:
        """The cause message: ``Invalid value: "x": why`` or ``Required value``."""
        if self.required:
            return f"Required value: {self.detail}" if self.detail else "Required value"
        value = f'"{self.value}"' if isinstance(self.value, str) else repr(self.value)
        return f"Invalid value: {value}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def dns1123_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 label (namespace names); empty when it is."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{_DNS1123_LABEL_FMT}')"
        )
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 subdomain (most object names); empty when it is."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1035 label (Service names); empty when it is."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1035_LABEL.match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            f"'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL_FMT}')"
        )
    return errs


def path_segment_errors(value: str) -> list[str]:
    """Why ``value`` cannot be a URL path segment (RBAC object names); empty when it can."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def qualified_name_errors(value: str) -> list[str]:
    """Why ``value`` is not a qualified name (label and annotation keys); empty when it is."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_errs = dns1123_subdomain_errors(prefix)
        if prefix_errs:
            return [f"prefix part {e}" for e in prefix_errs]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
            f"or '123-abc', regex used for validation is '{_QUALIFIED_NAME_FMT}') with an "
            "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    errs: list[str] = []
    if len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if not _QUALIFIED_NAME.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{_QUALIFIED_NAME_FMT}')"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value; empty when it is."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character (e.g. "
            "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            f"'{_LABEL_VALUE_FMT}')"
        )
    return errs


def labels_errors(labels: Any, path: str = "metadata.labels") -> list[FieldError]:
    """Every invalid key or value of a ``metadata.labels`` map."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [FieldError(path, labels, "must be a map of string keys to string values")]
    out: list[FieldError] = []
    for key, value in labels.items():
        out += [FieldError(path, key, e) for e in qualified_name_errors(str(key))]
        if not isinstance(value, str):
            out.append(FieldError(f"{path}[{key}]", value, "label values must be strings"))
            continue
        out += [FieldError(path, value, e) for e in label_value_errors(value)]
    return out


def annotations_errors(annotations: Any, path: str = "metadata.annotations") -> list[FieldError]:
    """Every invalid key of a ``metadata.annotations`` map (values are free text)."""
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [FieldError(path, annotations, "must be a map of string keys to string values")]
    out: list[FieldError] = []
    for key, value in annotations.items():
        out += [FieldError(path, key, e.capitalize()) for e in qualified_name_errors(str(key))]
        if not isinstance(value, str):
            out.append(FieldError(f"{path}[{key}]", value, "annotation values must be strings"))
    return out


# Which name rule each resource uses, as in the API server's per-type validation.
_NAME_RULES = {
    "namespaces": dns1123_label_errors,
    "services": dns1035_label_errors,
    "roles": path_segment_errors,
    "rolebindings": path_segment_errors,
    "clusterroles": path_segment_errors,
    "clusterrolebindings": path_segment_errors,
}


def name_errors(plural: str, name: str) -> list[str]:
    """Why ``name`` is not a valid object name for resources ``plural``."""
    rule = _NAME_RULES.get(plural, dns1123_subdomain_errors)
    return rule(name)


def object_errors(plural: str, obj: dict[str, Any]) -> list[FieldError]:
    """Metadata problems that make the API server answer 422 Invalid for an object."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [FieldError("metadata", meta, "must be an object")]
    out: list[FieldError] = []
    name = meta.get("name")
    if name:
        out += [FieldError("metadata.name", name, e) for e in name_errors(plural, str(name))]
    generate_name = meta.get("generateName")
    if not name and generate_name:
        # generateName gets a random suffix appended; validate it as a prefix of a valid name.
        probe = str(generate_name).rstrip("-") or "x"
        out += [
            FieldError("metadata.generateName", generate_name, e)
            for e in name_errors(plural, probe)
        ]
    out += labels_errors(meta.get("labels"))
    out += annotations_errors(meta.get("annotations"))
    return out


# -- Events (pkg/apis/core/validation/events.go) ------------------------------------------------

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024


def event_errors(event: dict[str, Any], *, strict: bool) -> list[FieldError]:
    """``ValidateEventCreate`` of an Event in its core/v1 form.

    The legacy rules apply to every Event; ``strict`` adds those of a creation through
    ``events.k8s.io/v1``. An Event about a cluster-scoped object (a Namespace, a Node) has no
    ``involvedObject.namespace`` and must itself live in ``default`` (or, with an
    ``eventTime``, ``kube-system``).
    """
    out: list[FieldError] = []
    meta = event.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    involved = event.get("involvedObject") or {}
    involved_ns = str(involved.get("namespace") or "")
    mismatch = FieldError("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                out.append(mismatch)
        elif namespace != involved_ns:
            out.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            out.append(mismatch)
        controller = str(event.get("reportingComponent") or "")
        if not controller:
            out.append(FieldError("reportingController", "", "", required=True))
        out += (
            [
                FieldError("reportingController", controller, e)
                for e in qualified_name_errors(controller)
            ]
            if controller
            else []
        )
        instance = str(event.get("reportingInstance") or "")
        if not instance:
            out.append(FieldError("reportingInstance", "", "", required=True))
        elif len(instance) > REPORTING_INSTANCE_LIMIT:
            out.append(
                FieldError(
                    "reportingInstance",
                    "",
                    f"can have at most {REPORTING_INSTANCE_LIMIT} characters",
                )
            )
        action = str(event.get("action") or "")
        if not action:
            out.append(FieldError("action", "", "", required=True))
        elif len(action) > ACTION_LIMIT:
            out.append(FieldError("action", "", f"can have at most {ACTION_LIMIT} characters"))
        reason = str(event.get("reason") or "")
        if not reason:
            out.append(FieldError("reason", "", "", required=True))
        elif len(reason) > REASON_LIMIT:
            out.append(FieldError("reason", "", f"can have at most {REASON_LIMIT} characters"))
        if len(str(event.get("message") or "")) > NOTE_LIMIT:
            out.append(FieldError("message", "", f"can have at most {NOTE_LIMIT} characters"))
    out += (
        [FieldError("namespace", namespace, e) for e in dns1123_subdomain_errors(namespace)]
        if namespace
        else []
    )
    if not strict:
        return out
    series = event.get("series")
    if series is not None:
        if int((series or {}).get("count") or 0) < 2:
            out.append(FieldError("series.count", "", "should be at least 2"))
        if not (series or {}).get("lastObservedTime"):
            out.append(FieldError("series.lastObservedTime", "", "", required=True))
    if not event.get("eventTime"):
        out.append(FieldError("eventTime", "", "", required=True))
    etype = event.get("type") or ""
    if etype not in ("Normal", "Warning"):
        out.append(FieldError("type", "", f"has invalid value: {etype}"))
    for key in ("firstTimestamp", "lastTimestamp"):
        if event.get(key):
            out.append(FieldError(key, "", "needs to be unset"))
    if event.get("count"):
        out.append(FieldError("count", "", "needs to be unset"))
    source = event.get("source") or {}
    if source.get("component") or source.get("host"):
        out.append(FieldError("source", "", "needs to be unset"))
    return out
