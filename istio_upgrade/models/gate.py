"""Contracts of the per-batch safety gate.

``GateSpec`` is what the operator configures; ``GateQuery`` is what the workflow asks the
``measure_gate`` activity for; ``GateMeasurements`` is what Prometheus answered; and
``GateResult`` is the verdict ``evaluate_gate`` derives from it, recorded for every evaluation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.slo import SLOSpec, default_slos

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
InconclusivePolicy = Literal["wait_for_approval", "rollback", "proceed"]
WindowName = Literal["since_warmup", "short"]
ViewName = Literal["inbound", "edge_old_to_new", "outbound"]


def check_prometheus_url(value: str, field: str) -> str:
    """``value`` if it is an http(s) URL without credentials.

    The spec is the workflow's input, stored in clear in Temporal's history and shown in the
    Web UI; a ``user:password@`` in the URL would leak there (the value is therefore never
    echoed in the error either).
    """
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"{field} {value!r} must start with http:// or https://, "
            "e.g. http://prometheus.istio-system.svc:9090"
        )
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{field} must not contain credentials (user:password@): the spec is stored in "
            "clear in Temporal's history; name where the worker reads them instead, e.g. "
            "prometheus_auth: {basic_auth: {username: …, password_file: /etc/…}} "
            "(see docs/slo-gate.md, Prometheus behind authentication)"
        )
    return value


class GateSpec(BaseModel):
    """How each migrated batch is judged before the next one starts."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    slos: list[SLOSpec] = Field(default_factory=default_slos, min_length=1)
    """SLOs every batch must keep; default: availability at 99.9% over 30 days."""
    prometheus_url: str = "http://prometheus.istio-system.svc:9090"
    """Base URL of the Prometheus that scrapes the mesh's Istio metrics."""
    prometheus_auth: PrometheusAuth | None = None
    """Credentials, headers and CA bundle for ``prometheus_url``, as references to files or
    environment variables of the worker (never values); None: plain requests."""
    warmup_seconds: float = Field(30.0, ge=0)
    """Pause after every pod of the batch is Ready before windows open: restarts under-count."""
    soak_seconds: float = Field(300.0, ge=0)
    """How long a batch must stay healthy before the next batch starts."""
    interval_seconds: float = Field(30.0, gt=0)
    """Time between two evaluations of the same batch."""
    max_soak_seconds: float = Field(900.0, ge=0)
    """How long an INCONCLUSIVE batch may soak before ``on_inconclusive`` applies."""
    short_window_seconds: float = Field(300.0, gt=0)
    """The short window of the multiwindow rule (capped by the time since warm-up)."""
    on_inconclusive: InconclusivePolicy = "wait_for_approval"
    """What to do when ``max_soak_seconds`` passes without a PASS or FAIL."""
    error_budget_fraction: float | None = Field(None, gt=0, le=1)
    """Share of each SLO's period budget the whole upgrade may spend. When set, each batch's
    allowed burn rate is ``F x period / (n_batches x soak_seconds)`` instead of the SLO's
    ``burn_rate_threshold``."""
    confirmations: int = Field(2, ge=1)
    """Consecutive evaluations a failing signal must show before the batch FAILs."""
    z_threshold: float = Field(2.33, gt=0)
    """One-sided significance of the batch-vs-baseline test (2.33 ≈ p 0.01)."""
    min_relative_ratio: float = Field(1.25, ge=1)
    """The batch's error ratio must be at least this multiple of the baseline's to FAIL."""
    min_absolute_diff_budgets: float = Field(0.5, ge=0)
    """…and exceed it by at least this many error budgets (x (1 - objective))."""
    liveness_min_ratio: float = Field(0.5, ge=0, le=1)
    """A namespace serving below this share of its pre-migration request rate FAILs."""
    query_timeout_seconds: float = Field(10.0, gt=0)
    """Timeout of each Prometheus round trip."""

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_prometheus_url(value, "gate.prometheus_url").rstrip("/")

    @model_validator(mode="after")
    def _soak_bounds(self) -> GateSpec:
        if self.max_soak_seconds < self.soak_seconds:
            raise ValueError(
                f"max_soak_seconds {self.max_soak_seconds:g} is shorter than soak_seconds "
                f"{self.soak_seconds:g}; raise max_soak_seconds to at least soak_seconds"
            )
        names = [s.name for s in self.slos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slos: names must be unique, {', '.join(dupes)} repeats; rename one")
        return self


class BaselineRef(BaseModel):
    """The upgrade run that holds the plan; ``measure_gate`` queries it for the baseline."""

    workflow_id: str
    run_id: str
    batch_index: int = Field(ge=0)


class BudgetCounts(BaseModel):
    """Bad requests of migrated namespaces since their batches went Ready, for one SLO.

    ``batch_*``: this batch since its Ready; ``all_*``: every batch migrated so far, each since
    its own Ready (``all_rate`` sums each batch's ``total / seconds``).
    """

    slo: str
    batch_bad: float = 0.0
    batch_total: float = 0.0
    batch_seconds: float = 0.0
    all_bad: float = 0.0
    all_rate: float = 0.0


class GateQuery(BaseModel):
    """Input of ``measure_gate``: which namespaces, which windows, which Prometheus."""

    prometheus_url: str
    slos: list[SLOSpec]
    prometheus_auth: PrometheusAuth | None = None
    """How to authenticate to ``prometheus_url``: references the worker resolves."""
    batch_namespaces: list[str] = Field(default_factory=list)
    """Namespaces migrated in this batch (B); empty with ``baseline_ref``, whose batch the
    activity reads from the upgrade."""
    baseline_namespaces: list[str] = Field(default_factory=list)
    """Namespaces still on the old revision (O); empty for the last batch."""
    new_revision: str
    old_revision: str
    window_start: datetime
    """UTC: every pod of the batch Ready on the new revision, plus the warm-up."""
    evaluated_at: datetime
    """UTC instant the queries are evaluated at (the workflow's ``workflow.now()``)."""
    short_window_seconds: float = Field(300.0, gt=0)
    pre_migration_start: datetime | None = None
    """Start of the liveness baseline window (the batch still on the old revision)."""
    pre_migration_end: datetime | None = None
    """When the batch's migration started; also the start of the control-plane window."""
    timeout_seconds: float = Field(10.0, gt=0)
    batch_count: int = Field(1, ge=1)
    """Number of batches in the plan, for the budget-derived allowed burn."""
    baseline_ref: BaselineRef | None = None
    """Where ``measure_gate`` reads O and the earlier batches from, instead of
    ``baseline_namespaces``: the workflow that asks, by query (never recorded in history)."""
    ready_at: datetime | None = None
    """When every pod of the batch was Ready on the new revision: the start of the batch's
    error-budget window."""

    @model_validator(mode="after")
    def _batch_known(self) -> GateQuery:
        if not self.batch_namespaces and self.baseline_ref is None:
            raise ValueError("batch_namespaces: name at least one namespace (or a baseline_ref)")
        return self


class Counts(BaseModel):
    """Bad and total requests of one namespace over one window."""

    bad: float = Field(ge=0)
    total: float = Field(ge=0)

    @property
    def ratio(self) -> float:
        return self.bad / self.total if self.total > 0 else 0.0


class SLIWindow(BaseModel):
    """Counts of one SLO over one window, per namespace and view."""

    slo: str
    """``SLOSpec.name``."""
    window: WindowName
    window_seconds: float
    inbound: dict[str, Counts] = Field(default_factory=dict)
    """Requests received by each namespace (B and O), from the SLO's reporter."""
    edge_old_to_new: dict[str, Counts] = Field(default_factory=dict)
    """Requests from O into each B namespace, seen by the (old) source proxy."""
    outbound: dict[str, Counts] = Field(default_factory=dict)
    """Requests sent by each B namespace, seen by its (new) source proxy."""
    baseline: dict[str, Counts] = Field(default_factory=dict)
    """View → O's requests pooled into one count (by Prometheus); absent in measurements
    recorded before pooling, where O's namespaces are in the per-namespace dicts."""


class ControlPlane(BaseModel):
    """Control-plane counter increases of the new revision since the batch's migration."""

    xds_rejects: float | None = None
    xds_internal_errors: float | None = None
    injection_failures: float | None = None
    xds_proxies: float | None = None
    """Current ``pilot_xds`` of the new revision (connected proxies)."""
    window_seconds: float = 0.0


class GateMeasurements(BaseModel):
    """What Prometheus answered for one ``GateQuery``; missing data is in ``errors``."""

    batch_namespaces: list[str]
    """B; empty when the activity pools (the workflow knows its batch: ``fill_batch``)."""
    baseline_namespaces: list[str]
    new_revision: str
    old_revision: str
    window_start: datetime
    evaluated_at: datetime
    batch_count: int = 1
    slis: list[SLIWindow] = Field(default_factory=list)
    request_rate: dict[str, float] = Field(default_factory=dict)
    """Requests per second each B namespace received since warm-up (destination reporter)."""
    pre_migration_rate: dict[str, float] = Field(default_factory=dict)
    """Requests per second each B namespace received before its migration."""
    control_plane: ControlPlane = Field(default_factory=ControlPlane)
    errors: list[str] = Field(default_factory=list)
    """Why data is missing: no data, NaN, Prometheus unreachable. Missing counts are never 0."""
    queries: list[str] = Field(default_factory=list)
    """The PromQL run, in order (measurements recorded before ``query_count``; the activity
    now logs the text instead)."""
    query_count: int | None = None
    """PromQL round trips of this evaluation."""
    baseline_size: int | None = None
    """Namespaces in O, when O was pooled by the activity (``baseline_namespaces`` empty)."""
    outbound_rate: dict[str, float] = Field(default_factory=dict)
    """Requests per second each B namespace sent since warm-up (source reporter)."""
    pre_migration_outbound_rate: dict[str, float] = Field(default_factory=dict)
    """Requests per second each B namespace sent before its migration."""
    pre_migration_seconds: float | None = None
    """Length of the pre-migration window measured (None: not measured, or older code)."""
    restarts: dict[str, float] = Field(default_factory=dict)
    """Container restarts of each B namespace since the window opened
    (``kube_pod_container_status_restarts_total``), where Prometheus has kube-state-metrics."""
    budget: list[BudgetCounts] = Field(default_factory=list)
    """Per SLO: errors of the migrated namespaces since each batch went Ready."""
    short_is_since_warmup: bool = False
    """The short window is the since-warm-up window (not yet longer than the short window's
    length): measured once, not twice, and read as both."""


class BudgetSpent(BaseModel):
    """Error budget an upgrade spent, as fractions of each SLO's period budget."""

    total: dict[str, float] = Field(default_factory=dict)
    """SLO name → fraction of the period's budget spent by all migrated namespaces."""
    batches: dict[int, dict[str, float]] = Field(default_factory=dict)
    """Batch index → SLO name → fraction spent by that batch since it went Ready."""


def budget_markdown(budget: BudgetSpent | None) -> str:
    """One line for the Web UI: ``Error budget spent: availability 0.12% (batch 0 0.05% …)``."""
    if budget is None or not budget.total:
        return ""
    parts = []
    for slo, spent in budget.total.items():
        per = ", ".join(
            f"b{i} {b[slo] * 100:.2g}%" for i, b in sorted(budget.batches.items()) if slo in b
        )
        parts.append(f"{slo} {spent * 100:.3g}%" + (f" ({per})" if per else ""))
    return "Error budget spent: " + "; ".join(parts)


class NamespaceGate(BaseModel):
    """The verdict of one namespace of the batch."""

    namespace: str
    verdict: Verdict
    reason: str
    """The decisive sentence, with numbers."""
    requests: float = 0.0
    """Inbound requests since warm-up (first SLO)."""
    min_requests: int = 0
    """Requests needed before this namespace may PASS (rule of three)."""
    burn_rates: dict[str, float] = Field(default_factory=dict)
    """SLO name → burn rate since warm-up."""
    short_burn_rates: dict[str, float] = Field(default_factory=dict)
    """SLO name → burn rate over the short window."""
    z_scores: dict[str, float] = Field(default_factory=dict)
    """SLO name → z of the batch-vs-baseline test."""
    signals: list[str] = Field(default_factory=list)
    """Failing signals seen in this evaluation (``burn:<slo>``, ``relative:<slo>``,
    ``liveness`` …), compared with the previous evaluation for confirmation."""


class GateResult(BaseModel):
    """One evaluation of a batch, recorded in the workflow's history and progress."""

    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    """Human sentences with the numbers that decided."""
    namespaces: dict[str, NamespaceGate] = Field(default_factory=dict)
    burn_rates: dict[str, float] = Field(default_factory=dict)
    """SLO name → burn rate of the whole batch since warm-up."""
    baseline_burn_rates: dict[str, float] = Field(default_factory=dict)
    """SLO name → burn rate of the baseline (O) since warm-up."""
    allowed_burn: dict[str, float] = Field(default_factory=dict)
    """SLO name → the burn-rate threshold applied."""
    evaluated_at: datetime
    queries: list[str] = Field(default_factory=list)
    """PromQL text (results recorded before ``query_count``)."""
    sequence: int = 1
    """1 for the first evaluation of the batch, then 2, 3 …"""
    query_count: int | None = None
    """PromQL round trips behind this result (the text is in the worker's log)."""
    budget: dict[str, float] = Field(default_factory=dict)
    """SLO name → fraction of the period's error budget the batch spent since it went Ready."""
    budget_total: dict[str, float] = Field(default_factory=dict)
    """SLO name → fraction spent by every batch migrated so far, each since its Ready."""
