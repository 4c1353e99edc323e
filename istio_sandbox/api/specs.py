"""Validation of the pod template and Service fields a real API server refuses.

After defaulting (``pkg/apis/core/v1/defaults.go``: protocol ``TCP``, probe scheme ``HTTP``,
path ``/``), ``pkg/apis/core/validation/validation.go`` checks, for every container of a
pod (template): ports (``validateContainerPorts``: ``containerPort`` 1-65535, names
IANA service names and unique, protocol ``TCP``/``UDP``/``SCTP``), probes (``validateProbe``:
exactly one handler, non-negative timings, ``successThreshold`` 1 for liveness and startup
probes, an ``httpGet``/``tcpSocket`` port that is a number in range or an IANA name),
resources (``ValidateResourceRequirements``: quantities, requests not above limits); and for a
Service (``ValidateService``): ports present, each 1-65535 with a valid ``targetPort``, names
unique and required once there are several, a known ``type``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from istio_sandbox.api.validation import FieldError

_IANA = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_TIMINGS = (
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
)
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_POD_TEMPLATES = {
    "apps/deployments",
    "apps/statefulsets",
    "apps/daemonsets",
    "apps/replicasets",
    "batch/jobs",
}


def iana_name_errors(value: str) -> list[str]:
    """Why ``value`` is not an IANA_SVC_NAME (``validation.IsValidPortName``)."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _IANA.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    return errs


def _port_range(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [FieldError(path, value, "must be between 1 and 65535, inclusive")]
    return []


def _num_or_name(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, str):
        if value.isdigit():
            return _port_range(path, int(value))
        return [FieldError(path, value, e) for e in iana_name_errors(value)]
    return _port_range(path, value)


def parse_quantity(value: Any) -> Decimal | None:
    """A resource quantity's value (``100m`` → 0.1, ``256Mi`` → 268435456); None: invalid."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value)) if isinstance(value, str) else None
    if not match:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2) or ""
    if suffix[:1] in {"e", "E"} and suffix not in _SUFFIX:
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX.get(suffix, Decimal(1))


def _probe_errors(path: str, probe: Any, *, success_one: bool) -> list[FieldError]:
    if not isinstance(probe, dict):
        return [FieldError(path, probe, "must be an object")]
    errs: list[FieldError] = []
    handlers = [h for h in _HANDLERS if probe.get(h) is not None]
    if not handlers:
        errs.append(FieldError(path, None, "must specify a handler type", required=True))
    elif len(handlers) > 1:
        errs.append(
            FieldError(f"{path}.{handlers[1]}", "", "may not specify more than 1 handler type")
        )
    for name in _TIMINGS:
        value = probe.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            errs.append(FieldError(f"{path}.{name}", value, "must be greater than or equal to 0"))
    success = probe.get("successThreshold")
    if success_one and success not in (None, 1):
        errs.append(FieldError(f"{path}.successThreshold", success, "must be 1"))
    for handler in ("httpGet", "tcpSocket"):
        action = probe.get(handler)
        if isinstance(action, dict):
            errs += _num_or_name(f"{path}.{handler}.port", action.get("port"))
    http = probe.get("httpGet")
    if isinstance(http, dict) and http.get("scheme", "HTTP") not in ("HTTP", "HTTPS"):
        errs.append(
            FieldError(
                f"{path}.httpGet.scheme", http["scheme"], 'supported values: "HTTP", "HTTPS"'
            )
        )
    return errs


def _resources_errors(path: str, resources: Any) -> list[FieldError]:
    if not isinstance(resources, dict):
        return []
    errs: list[FieldError] = []
    parsed: dict[str, dict[str, Decimal]] = {}
    for part in ("limits", "requests"):
        for name, value in (resources.get(part) or {}).items():
            quantity = parse_quantity(value)
            if quantity is None:
                errs.append(
                    FieldError(
                        f"{path}.{part}[{name}]",
                        value,
                        "quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
            elif quantity < 0:
                errs.append(
                    FieldError(
                        f"{path}.{part}[{name}]", value, "must be greater than or equal to 0"
                    )
                )
            else:
                parsed.setdefault(part, {})[name] = quantity
    for name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and request > limit:
            errs.append(
                FieldError(
                    f"{path}.requests[{name}]",
                    resources["requests"][name],
                    f"must be less than or equal to {name} limit of {resources['limits'][name]}",
                )
            )
    return errs


def container_errors(path: str, container: Any) -> list[FieldError]:
    """A container's ports, probes and resources, as ``validateContainers`` checks them."""
    if not isinstance(container, dict):
        return [FieldError(path, container, "must be an object")]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(container.get("ports") or []):
        at = f"{path}.ports[{i}]"
        name = port.get("name")
        if name:
            errs += [FieldError(f"{at}.name", name, e) for e in iana_name_errors(name)]
            if name in names:
                errs.append(FieldError(f"{at}.name", name, "Duplicate value"))
            names.add(name)
        errs += _port_range(f"{at}.containerPort", port.get("containerPort"))
        if port.get("hostPort") not in (None, 0):
            errs += _port_range(f"{at}.hostPort", port.get("hostPort"))
        protocol = port.get("protocol", "TCP")
        if protocol not in _PROTOCOLS:
            errs.append(
                FieldError(f"{at}.protocol", protocol, 'supported values: "SCTP", "TCP", "UDP"')
            )
    for probe, success_one in (
        ("livenessProbe", True),
        ("readinessProbe", False),
        ("startupProbe", True),
    ):
        if container.get(probe) is not None:
            errs += _probe_errors(f"{path}.{probe}", container[probe], success_one=success_one)
    errs += _resources_errors(f"{path}.resources", container.get("resources"))
    return errs


def pod_spec_errors(path: str, spec: Any) -> list[FieldError]:
    """Every container's (init containers' too) errors of a pod spec."""
    if not isinstance(spec, dict):
        return []
    errs: list[FieldError] = []
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            errs += container_errors(f"{path}.{key}[{i}]", container)
    return errs


def service_errors(spec: Any) -> list[FieldError]:
    """A Service's type and ports, as ``ValidateService`` checks them."""
    if not isinstance(spec, dict):
        return []
    errs: list[FieldError] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        allowed = ", ".join(f'"{t}"' for t in _SERVICE_TYPES)
        errs.append(FieldError("spec.type", kind, f"supported values: {allowed}"))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errs.append(FieldError("spec.ports", None, "", required=True))
    names: set[str] = set()
    for i, port in enumerate(ports):
        at = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(FieldError(f"{at}.name", None, "", required=True))
        if name:
            if name in names:
                errs.append(FieldError(f"{at}.name", name, "Duplicate value"))
            names.add(name)
        errs += _port_range(f"{at}.port", port.get("port"))
        if port.get("protocol", "TCP") not in _PROTOCOLS:
            errs.append(
                FieldError(
                    f"{at}.protocol", port["protocol"], 'supported values: "SCTP", "TCP", "UDP"'
                )
            )
        if port.get("targetPort") not in (None, 0):
            errs += _num_or_name(f"{at}.targetPort", port["targetPort"])
    return errs


def spec_errors(key: str, obj: dict[str, Any]) -> list[FieldError]:
    """The spec errors of an object of the resource ``key`` (``group/plural``)."""
    spec = obj.get("spec")
    if key in _POD_TEMPLATES and isinstance(spec, dict):
        template = spec.get("template")
        if isinstance(template, dict):
            return pod_spec_errors("spec.template.spec", template.get("spec"))
    if key == "/pods":
        return pod_spec_errors("spec", spec)
    if key == "/services":
        return service_errors(spec)
    return []
