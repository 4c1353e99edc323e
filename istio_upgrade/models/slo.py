"""Service level objectives the upgrade gate and the generated alerting rules share.

An SLO names an SLI (a ratio of bad to total requests), an objective and a period. The error
budget is ``1 - objective``; the *burn rate* of a window is its error ratio divided by the
budget. The same spec drives the per-batch gate (``workflows/gate.py``) and the
multiwindow multi-burn-rate alerts (``slo/rules.py``).
"""

from __future__ import annotations

import bisect
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AvailabilitySLI(_Strict):
    """Bad requests are HTTP 5xx, response code 0 (reset/no response) and gRPC failures."""

    template: Literal["istio-availability"] = "istio-availability"
    grpc_failure_statuses: list[int] = Field(default_factory=lambda: [2, 4, 12, 13, 14, 15])
    """gRPC status codes counted as failures on ``request_protocol="grpc"`` (UNKNOWN,
    DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS)."""


class LatencySLI(_Strict):
    """Bad requests are those slower than ``threshold_ms``."""

    template: Literal["istio-latency"] = "istio-latency"
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


class BurnRateAlert(_Strict):
    """One row of the multiwindow multi-burn-rate table (Google SRE workbook, ch. 5)."""

    severity: Literal["page", "ticket"]
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

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: float) -> float:
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
