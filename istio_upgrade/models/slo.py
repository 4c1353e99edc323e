"""Service level objectives the upgrade gate and the generated alerting rules share.

An SLO names an SLI (a ratio of bad to total requests), an objective and a period. The error
budget is ``1 - objective``; the *burn rate* of a window is its error ratio divided by the
budget. The same spec drives the per-batch gate (``workflows/gate.py``) and the
multiwindow multi-burn-rate alerts (``slo/rules.py``).
"""

from __future__ import annotations

import bisect
import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from istio_upgrade.istio.telemetry import ENVOY_BUCKET_EDGES_MS

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}


def parse_duration(value: str | float | int) -> float:
    """Seconds in a Prometheus-style duration.

    Args:
        value: ``"30d"``, ``"1h30m"``, ``"90s"`` or a number of seconds.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: when the text is not a duration, naming the expected form.
    """
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value} is negative; use a number of seconds >= 0")
        return float(value)
    text = value.strip()
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; write e.g. 30d, 6h, 5m, 90s or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for whole seconds (``3600`` → ``1h``)."""
    whole = round(seconds)
    if whole <= 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def nearest_bucket_edges(threshold_ms: float) -> tuple[float, ...]:
    """The Envoy bucket edges on either side of ``threshold_ms`` (one or two values)."""
    i = bisect.bisect_left(ENVOY_BUCKET_EDGES_MS, threshold_ms)
    return tuple(ENVOY_BUCKET_EDGES_MS[max(0, i - 1) : i + 1])


# -- Validation errors that name the field and say what to do -----------------------------
#
# The same error reaches an operator three ways: as ``field: message`` lines of the CLI, as the
# message of a workflow that failed ``InvalidSpec`` (pydantic's own rendering, shown in the
# Web UI), and as ``e.errors()`` to release tooling. ``explain`` rewrites a ValidationError so
# that all three say the same: each error's location becomes one JSON path
# (``gate.slos[0].sli.threshold_ms`` — no discriminator tags, list indexes in brackets) and
# its message says what to do.

_EXPLAINED = "explained"
"""``ctx`` key marking an error already explained by a nested model."""

_URL_SECRETS = (
    (re.compile(r"(?<=://)[^/@\s'\"]+@"), "***@"),
    (re.compile(r"(?<=://)([^\s'\"?#]*)\?[^\s'\"#]*"), r"\1?***"),
)
"""User info and query strings of URLs quoted in messages: they may hold credentials."""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold, through Optional, unions, lists and dict values."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, set, frozenset, dict):
        args = get_args(annotation)
        if origin is dict:
            args = args[-1:]
        return [m for arg in args for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _field(model: type[BaseModel], name: str) -> Any:
    for key, info in model.model_fields.items():
        if name in (key, info.alias):
            return info
    return None


def _tagged(models: Sequence[type[BaseModel]], tag: str) -> list[type[BaseModel]]:
    """The members of a discriminated union whose literal tag is ``tag``."""
    return [
        m
        for m in models
        for info in m.model_fields.values()
        if get_origin(info.annotation) is Literal and info.default == tag
    ]


def _walk(root: type[BaseModel], loc: Iterable[int | str]) -> tuple[str, list[type[BaseModel]]]:
    """The JSON path of ``loc`` and the models that can sit at its end."""
    path, models = "", [root]
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        infos = [(m, _field(m, part)) for m in models]
        found = [info for _, info in infos if info is not None]
        if found:
            models = [m for info in found for m in _models_in(info.annotation)]
        elif len(models) > 1 and _tagged(models, part):
            models = _tagged(models, part)  # a discriminator tag: not part of the path
            continue
        else:
            models = []
        path += f".{part}" if path else part
    return path, models


def _fields(models: Sequence[type[BaseModel]]) -> list[str]:
    return sorted({info.alias or name for m in models for name, info in m.model_fields.items()})


def _quote_hint(value: Any) -> str | None:
    """How to write a string that YAML read as a boolean or a number."""
    if isinstance(value, bool):
        return (
            "not a boolean: quote it, e.g. 'no' (YAML reads unquoted yes, no, on, off, true "
            "and false as booleans)"
        )
    if isinstance(value, int | float):
        return f"not a number: quote it, e.g. '{value}'"
    return None


def explain(error: ValidationError, root: type[BaseModel], *, hint: str = "") -> ValidationError:
    """``error`` with JSON paths as locations and messages that say what to do.

    Args:
        error: What validating ``root`` raised.
        root: The model validated; its fields name the paths and the spelling suggestions.
        hint: Appended to unknown and missing field messages, e.g. where the fields are listed.

    Returns:
        The same errors (types kept), each located by one JSON path.
    """
    details: list[InitErrorDetails] = []
    tail = f"; {hint}" if hint else ""
    for item in error.errors(include_url=False):
        path, models = _walk(root, item["loc"])
        kind = item["type"]
        message = str(item["msg"])
        ctx: dict[str, Any] = dict(item.get("ctx") or {})
        if not ctx.get(_EXPLAINED):
            ctx = {_EXPLAINED: True}
            message = message.removeprefix("Value error, ")
            if kind == "extra_forbidden":
                parent, siblings = _walk(root, item["loc"][:-1])
                leaf = path.removeprefix(parent).lstrip(".")
                close = difflib.get_close_matches(leaf, _fields(siblings), n=1, cutoff=0.6)
                if close:
                    ctx["did_you_mean"] = close[0]
                suggestion = f" (did you mean {close[0]!r}?)" if close else ""
                message = (
                    "Extra inputs are not permitted: unknown field; remove it or check its "
                    f"spelling{suggestion}{tail}"
                )
            elif kind == "missing":
                message = f"Field required: add it{tail}"
            elif kind == "string_type" and _quote_hint(item["input"]):
                message = f"Input should be a valid string, {_quote_hint(item['input'])}"
            elif kind == "value_error" and models:
                # A model-level check whose message starts with one of the model's fields
                # ("max_soak_seconds 30 is shorter …") is located at that field.
                first = message.split(" ", 1)[0].rstrip(":,")
                if first in _fields(models):
                    path = f"{path}.{first}" if path else first
        for pattern, replacement in _URL_SECRETS:
            message = pattern.sub(replacement, message)
        ctx["message"] = message
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(kind, "{message}", ctx),
                loc=(path,) if path else (),
                input=item["input"],
            )
        )
    return ValidationError.from_exception_data(error.title, details, hide_input=True)


def refusal(root: type[BaseModel], problems: Sequence[tuple[str, str, Any]]) -> ValidationError:
    """A ValidationError of ``root`` from ``(path, message, input)`` problems found after
    validation (bounds across fields, sizes of lists)."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(
                "value_error", "{message}", {_EXPLAINED: True, "message": message}
            ),
            loc=(path,) if path else (),
            input=value,
        )
        for path, message, value in problems
    ]
    return ValidationError.from_exception_data(root.__name__, details, hide_input=True)


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _explained(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as error:
            raise explain(error, cls) from None


class AvailabilitySLI(_Strict):
    """Bad requests are HTTP 5xx, response code 0 (reset/no response) and gRPC failures."""

    template: Literal["istio-availability"] = "istio-availability"
    """Selects this SLI: availability from ``istio_requests_total``."""
    grpc_failure_statuses: list[Annotated[int, Field(ge=0, le=16)]] = Field(
        default_factory=lambda: [2, 4, 12, 13, 14, 15]
    )
    """gRPC status codes counted as failures on ``request_protocol="grpc"`` (UNKNOWN,
    DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS)."""


class LatencySLI(_Strict):
    """Bad requests are those slower than ``threshold_ms``."""

    template: Literal["istio-latency"] = "istio-latency"
    """Selects this SLI: latency from ``istio_request_duration_milliseconds_bucket``."""
    threshold_ms: float
    """Must be one of Envoy's bucket edges so the count is exact (e.g. 100, 250, 500)."""

    @field_validator("threshold_ms")
    @classmethod
    def _on_bucket_edge(cls, v: float) -> float:
        if v not in ENVOY_BUCKET_EDGES_MS:
            near = " or ".join(f"{e:g}" for e in nearest_bucket_edges(v))
            raise ValueError(
                f"sli.threshold_ms {v:g} is not an Envoy histogram bucket edge, so slower "
                f"requests cannot be counted exactly; use {near}"
            )
        return v


class CustomSLI(_Strict):
    """Any pair of PromQL queries returning bad and total request *counts* per namespace.

    ``{{namespaces}}`` becomes a regex of namespaces (``a|b``) and ``{{window}}`` a range
    (``300s``). Each query should aggregate ``sum by (destination_workload_namespace)`` or
    ``sum by (namespace)`` so the gate can judge every namespace of a batch.
    """

    template: Literal["custom"] = "custom"
    """Selects this SLI: your own PromQL for bad and total events."""
    error_query: str
    """PromQL for bad events, e.g. ``sum by (namespace) (increase(http_requests_total{
    namespace=~"{{namespaces}}",code=~"5.."}[{{window}}]))``."""
    total_query: str
    """PromQL for all events, same shape as ``error_query``."""

    @field_validator("error_query", "total_query")
    @classmethod
    def _has_placeholders(cls, v: str) -> str:
        v = normalise_placeholders(v)
        missing = [p for p in ("{{namespaces}}", "{{window}}") if p not in v]
        if missing:
            raise ValueError(
                f"custom SLI query lacks {' and '.join(missing)}; the gate substitutes the "
                'batch\'s namespaces (regex) and the window, e.g. {namespace=~"{{namespaces}}"}'
                "[{{window}}]"
            )
        return v


def normalise_placeholders(query: str) -> str:
    """Accept Sloth's Go-template spelling (``{{.window}}``) for our placeholders."""
    return re.sub(r"\{\{\s*\.?(namespaces|window)\s*\}\}", r"{{\1}}", query)


SLI = Annotated[AvailabilitySLI | LatencySLI | CustomSLI, Field(discriminator="template")]

_SLO_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RULE_LABELS = frozenset({"slo", "severity", "destination_workload_namespace"})
"""Labels the generated recording rules and alerts set (``slo/rules.py``); an SLO's own
``labels`` may not override them, or every series would carry the wrong value."""


class BurnRateAlert(_Strict):
    """One row of the multiwindow multi-burn-rate table (Google SRE workbook, ch. 5)."""

    severity: Literal["page", "ticket"]
    """The ``severity`` label of the generated alert."""
    burn_rate: float = Field(gt=0)
    """Alert when both windows burn faster than this multiple of the sustainable rate."""
    long_window: str
    """E.g. ``1h``."""
    short_window: str
    """E.g. ``5m`` (1/12 of the long window, so the alert resets quickly)."""

    @field_validator("long_window", "short_window")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"window {v!r} must be longer than 0s")
        return v

    @model_validator(mode="after")
    def _short_is_shorter(self) -> BurnRateAlert:
        if parse_duration(self.short_window) >= parse_duration(self.long_window):
            raise ValueError(
                f"short_window {self.short_window} must be shorter than long_window "
                f"{self.long_window} (the workbook's short window is 1/12 of the long one, "
                "e.g. 1h and 5m)"
            )
        return self


def default_alerts() -> list[BurnRateAlert]:
    """Page at 14.4x (1h/5m) and 6x (6h/30m); ticket at 3x (1d/2h) and 1x (3d/6h)."""
    return [
        BurnRateAlert(severity="page", burn_rate=14.4, long_window="1h", short_window="5m"),
        BurnRateAlert(severity="page", burn_rate=6, long_window="6h", short_window="30m"),
        BurnRateAlert(severity="ticket", burn_rate=3, long_window="1d", short_window="2h"),
        BurnRateAlert(severity="ticket", burn_rate=1, long_window="3d", short_window="6h"),
    ]


class SLOSpec(_Strict):
    """A service level objective over the namespaces of the mesh."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    """Identifier used in reasons, recording rule names and alert labels."""
    objective: float = 0.999
    """Share of good requests over ``period``, strictly between 0 and 1 (e.g. 0.999)."""
    period: str = "30d"
    """The SLO period the error budget is counted over (e.g. ``30d``)."""
    sli: SLI = Field(default_factory=AvailabilitySLI)
    """``istio-availability``, ``istio-latency`` (with ``threshold_ms``) or ``custom``."""
    reporter: Literal["destination", "source"] = "destination"
    """Which proxy's view of the request counts for the inbound SLI."""
    burn_rate_threshold: float = Field(14.4, gt=0)
    """The gate fails a namespace whose short and since-warm-up windows both burn faster
    than this (unless ``error_budget_fraction`` derives a per-batch allowance)."""
    error_budget_fraction: float | None = Field(None, gt=0, le=1)
    """Share of this SLO's period budget the whole upgrade may spend; overrides the gate's."""
    alerts: list[BurnRateAlert] = Field(default_factory=default_alerts)
    """Rows of the alerting table ``slo rules`` renders."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels for generated rules (e.g. team, tier)."""

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        if isinstance(v, str) and not _SLO_NAME.fullmatch(v):
            raise ValueError(
                f"name {v!r} may hold only ASCII letters, digits, '_', '.' and '-', starting "
                "with a letter or digit: it names recording rules and alerts"
            )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _LABEL_NAME.fullmatch(key) or key.startswith("__"):
                raise ValueError(
                    f"labels: {key!r} is not a Prometheus label name; use letters, digits and "
                    "'_', not starting with a digit or '__' (e.g. team, tier)"
                )
            if key in RULE_LABELS:
                raise ValueError(
                    f"labels: {key!r} is set by the generated rules themselves; rename it"
                )
        return v

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: float) -> float:
        if v > 1.0 + 1e-9 and v < 100:
            raise ValueError(
                f"objective {v:g} leaves no error budget: it is a share, not a percentage; "
                f"use e.g. {v / 100:g} for {v:g}%"
            )
        if v >= 1:
            raise ValueError(f"objective {v:g} leaves no error budget; use e.g. 0.999")
        if v <= 0:
            raise ValueError(f"objective {v:g} must be above 0; use e.g. 0.999 for 99.9%")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"period {v!r} must be longer than 0s; use e.g. 30d")
        return v

    @property
    def error_budget(self) -> float:
        """``1 - objective``: the tolerated share of bad requests."""
        return 1.0 - self.objective

    @property
    def period_seconds(self) -> float:
        return parse_duration(self.period)


def default_slos() -> list[SLOSpec]:
    """One availability SLO at 99.9% over 30 days."""
    return [SLOSpec(name="availability", objective=0.999)]
