"""Activities that read the mesh's health from Prometheus for the safety gate.

``measure_gate`` never raises because Prometheus is down or has no data: it reports why in
``GateMeasurements.errors`` and the gate turns that into INCONCLUSIVE (never PASS). Counts
are never invented: a namespace without series is absent, not zero.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from istio_upgrade.models.activities import PrometheusProbe
from istio_upgrade.models.gate import (
    BaselineRef,
    BudgetCounts,
    ControlPlane,
    Counts,
    GateMeasurements,
    GateQuery,
    SLIWindow,
    WindowName,
)
from istio_upgrade.models.progress import Progress
from istio_upgrade.models.slo import LatencySLI, SLOSpec
from istio_upgrade.slo import promql

log = logging.getLogger(__name__)

NAMESPACE_LABELS = (promql.DEST_NS, promql.SOURCE_NS, "namespace", "exported_namespace")


class PrometheusError(Exception):
    """Prometheus could not answer a query (unreachable, HTTP error or PromQL error)."""


CHECK_URL = (
    "check spec.gate.prometheus_url (or spec.cluster.prometheus_url, or slo check --prometheus): "
    "it must be the base URL of the Prometheus server's HTTP API, e.g. "
    "http://prometheus.istio-system.svc:9090, not Grafana, a console or a login page in front "
    "of it"
)
"""What to do when the URL answers, but not as Prometheus does."""

_TITLE = re.compile(r"<title[^>]*>([^<]{1,200})</title>", re.IGNORECASE)


def _not_the_api(response: httpx.Response) -> str | None:
    """What answered instead of the API (HTML page, redirect), or None when it may be the API.

    A UI, an authenticating proxy's sign-in page or a wrong path prefix answer 200 with HTML
    or redirect; read as "no data", that would only ever be INCONCLUSIVE, with no hint that
    the URL is wrong.
    """
    if response.is_redirect:
        target = urlsplit(response.headers.get("location", ""))
        where = f"{target.scheme}://{target.netloc}" if target.netloc else ""
        return f"a redirect (HTTP {response.status_code} to {where}{target.path or '/'})"
    kind = response.headers.get("content-type", "").lower()
    head = response.text[:1024].lstrip().lower()
    if "html" in kind or head.startswith(("<!doctype html", "<html")):
        title = _TITLE.search(response.text[:65536])
        named = f", page title {' '.join(title.group(1).split())[:80]!r}" if title else ""
        return f"HTML (HTTP {response.status_code}{named})"
    return None


async def instant_query(
    http: httpx.AsyncClient, base_url: str, query: str, at: datetime | None = None
) -> list[dict[str, Any]]:
    """Run an instant query and return its vector.

    Args:
        http: The client (its timeout applies).
        base_url: Prometheus base URL.
        query: PromQL.
        at: Evaluation instant; default now.

    Returns:
        ``data.result`` of a vector answer (a scalar becomes one series without labels).

    Raises:
        PrometheusError: on connection errors, non-2xx answers or PromQL errors.
    """
    form = {"query": query}
    if at is not None:
        form["time"] = f"{at.timestamp():.3f}"
    url = f"{base_url.rstrip('/')}/api/v1/query"
    try:
        response = await http.post(url, data=form)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {base_url} unreachable: {exc!r}") from exc
    not_the_api = _not_the_api(response)
    if not_the_api is not None:
        raise PrometheusError(
            f"Prometheus at {base_url} answered {not_the_api}, not the Prometheus API; {CHECK_URL}"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise PrometheusError(
            f"Prometheus at {base_url} answered HTTP {response.status_code} without JSON, not "
            f"the Prometheus API; {CHECK_URL}"
        ) from exc
    if not isinstance(body, dict) or "status" not in body:
        raise PrometheusError(
            f"Prometheus at {base_url} answered JSON without the API's status field, not the "
            f"Prometheus API; {CHECK_URL}"
        )
    if body.get("status") != "success":
        raise PrometheusError(
            f"Prometheus at {base_url} rejected the query (HTTP {response.status_code}, "
            f"{body.get('errorType')}): {body.get('error')}"
        )
    data = body.get("data", {})
    if data.get("resultType") == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data.get("result", [])
    return result


def _value(series: dict[str, Any]) -> float:
    return float(series["value"][1])


def _namespace(labels: dict[str, str]) -> str | None:
    for key in NAMESPACE_LABELS:
        if labels.get(key):
            return labels[key]
    return None


def window_range(seconds: float) -> str:
    """A PromQL range of whole seconds, at least 1s."""
    return f"{max(1, math.floor(seconds))}s"


BASELINE = "baseline:"


def _counts(bad: float, total: float) -> Counts:
    """Counts rounded to thousandths: ``increase()`` extrapolates to 17 digits that decide
    nothing, and every digit is recorded in history at every evaluation."""
    return Counts(bad=round(bad, 3), total=round(total, 3))


def _rate(value: float, seconds: float) -> float:
    return float(f"{value / seconds:.6g}")


def parse_sli(
    slo: SLOSpec,
    window: WindowName,
    seconds: float,
    result: Sequence[dict[str, Any]],
    batch: Sequence[str],
    errors: list[str],
    missing: bool = True,
) -> SLIWindow:
    """Fold tagged series into per-namespace counts; record NaN and (with ``missing``) each
    batch namespace without inbound series (the gate finds those absent on its own)."""
    raw: dict[tuple[str, str], dict[str, float]] = {}
    for series in result:
        labels = series.get("metric", {})
        ns = _namespace(labels)
        value = _value(series)
        if labels.get(promql.POOL) == "baseline":
            if math.isnan(value) or math.isinf(value):
                errors.append(
                    f"SLO {slo.name} ({window}): the baseline's {labels.get('kind')} is {value}"
                )
                continue
            view = labels.get("view", "inbound")
            raw.setdefault((f"{BASELINE}{view}", ""), {})[labels.get("kind", "total")] = value
            continue
        if ns is None:
            errors.append(
                f"SLO {slo.name}: a series without a namespace label came back "
                f"({labels}); aggregate custom queries with sum by (namespace)"
            )
            continue
        if math.isnan(value) or math.isinf(value):
            errors.append(f"SLO {slo.name} ({window}): {labels.get('kind')} of {ns} is {value}")
            continue
        view = labels.get("view", "inbound")
        raw.setdefault((view, ns), {})[labels.get("kind", "total")] = value
    out = SLIWindow(slo=slo.name, window=window, window_seconds=seconds)
    for (view, ns), kinds in sorted(raw.items()):
        if "total" not in kinds:
            continue
        total = kinds["total"]
        if isinstance(slo.sli, LatencySLI):
            # Buckets and _count are scraped together; clamp the rare skew between them.
            bad = max(0.0, total - kinds.get("good", total))
        else:
            bad = min(kinds.get("bad", 0.0), total)
        if view.startswith(BASELINE):
            out.baseline[view.removeprefix(BASELINE)] = _counts(bad, total)
        else:
            getattr(out, view)[ns] = _counts(bad, total)
    for ns in batch if missing else ():
        if ns not in out.inbound:
            errors.append(
                f"no data: SLO {slo.name} has no inbound request series for namespace {ns} "
                f"over the last {window_range(seconds)} ({window})"
            )
    return out


def liveness_query(
    batch: Sequence[str],
    window: str,
    pre_window: str | None,
    pre_end: datetime | None,
    quiet: bool = False,
) -> str:
    """Inbound requests of each batch namespace now and before its migration.

    With ``quiet``, also what a namespace without inbound traffic is judged on: its outbound
    requests (source reporter) now and before, and its containers' restarts since the window
    opened (kube-state-metrics, where Prometheus scrapes it).
    """
    regex = promql.namespace_regex(batch)
    views = [("inbound", "destination", promql.DEST_NS)]
    if quiet:
        views.append(("outbound", "source", promql.SOURCE_NS))
    parts: list[str] = []
    for view, reporter, label in views:
        sel = promql.selector([("reporter", "=", reporter), (label, "=~", regex)])
        now = f"sum by ({label}) (increase({promql.REQUESTS}{sel}[{window}]))"
        tags = {"window": "current"} if view == "inbound" else {"window": "current", "view": view}
        parts.append(promql.tag(now, **tags))
        if pre_window is not None and pre_end is not None:
            pre = (
                f"sum by ({label}) "
                f"(increase({promql.REQUESTS}{sel}[{pre_window}] @ {pre_end.timestamp():.3f}))"
            )
            tags = {"window": "pre"} if view == "inbound" else {"window": "pre", "view": view}
            parts.append(promql.tag(pre, **tags))
    if quiet:
        sel = promql.selector([("namespace", "=~", regex)])
        restarts = (
            f"sum by (namespace) (increase(kube_pod_container_status_restarts_total{sel}"
            f"[{window}]))"
        )
        parts.append(promql.tag(restarts, window="restarts"))
    return "\n  or ".join(parts)


def control_plane_query(revision: str, window: str) -> str:
    """Counter increases and connected proxies of one revision, one series per metric."""
    rev = promql.selector([("revision", "=", revision)])
    parts = [
        promql.tag(f"sum(increase(pilot_total_xds_rejects{rev}[{window}]))", metric="xds_rejects"),
        promql.tag(
            f"sum(increase(pilot_total_xds_internal_errors{rev}[{window}]))",
            metric="xds_internal_errors",
        ),
        promql.tag(
            f"sum(increase(sidecar_injection_failure_total{rev}[{window}]))",
            metric="injection_failures",
        ),
        promql.tag(f"sum(pilot_xds{rev})", metric="xds_proxies"),
    ]
    return "\n  or ".join(parts)


BudgetBatch = tuple[int, list[str], datetime]
"""``(batch index, namespaces, when the batch went Ready)`` of a migrated batch."""


async def collect(
    query: GateQuery,
    http: httpx.AsyncClient,
    *,
    baseline: Sequence[str] | None = None,
    budget_batches: Sequence[BudgetBatch] = (),
    with_queries: bool = True,
    batch: Sequence[str] | None = None,
) -> GateMeasurements:
    """Measure everything the gate needs; see ``measure_gate``.

    Args:
        baseline: O, when resolved from ``query.baseline_ref``; default
            ``query.baseline_namespaces``.
        budget_batches: Migrated batches whose error budget spent since Ready to measure.
        with_queries: Keep the PromQL text in ``queries``, echo the batch and list each
            namespace without data in ``errors`` (the CLI shows them). The activity leaves
            them out, so that an evaluation's record does not grow with the batch's names:
            it logs the PromQL, and the workflow knows its batch.
        batch: B, when resolved from ``query.baseline_ref``; default ``query.batch_namespaces``.
    """
    others = list(query.baseline_namespaces if baseline is None else baseline)
    names = list(query.batch_namespaces if batch is None else batch)
    m = GateMeasurements(
        # A batch read from the upgrade is not echoed: the workflow knows it, and it would
        # be recorded at every evaluation.
        batch_namespaces=names if with_queries or batch is None else [],
        baseline_namespaces=[],
        baseline_size=len(others),
        new_revision=query.new_revision,
        old_revision=query.old_revision,
        window_start=query.window_start,
        evaluated_at=query.evaluated_at,
        batch_count=query.batch_count,
        query_count=0,
    )
    since = (query.evaluated_at - query.window_start).total_seconds()
    if since < 1:
        m.errors.append(
            f"the since-warm-up window is {since:.1f}s long at {query.evaluated_at.isoformat()}; "
            "evaluate at least 1s after window_start"
        )
        return m
    short = min(query.short_window_seconds, since)
    windows: list[tuple[WindowName, float]] = [("since_warmup", since), ("short", short)]
    if not with_queries and short >= since:
        # The same window twice: one query, one set of counts in the record.
        windows = windows[:1]
        m.short_is_since_warmup = True

    jobs: list[tuple[str, str]] = []
    if not names:
        m.errors.append("the batch has no namespace to measure")
        return m
    for slo in query.slos:
        for name, seconds in windows:
            text = promql.sli_query_pooled(slo, names, others, window_range(seconds))
            jobs.append((f"sli:{slo.name}:{name}", text))
    pre_window: str | None = None
    cp_start = query.pre_migration_end or query.window_start
    if query.pre_migration_start is not None and query.pre_migration_end is not None:
        pre_seconds = (query.pre_migration_end - query.pre_migration_start).total_seconds()
        if pre_seconds >= 1:
            pre_window = window_range(pre_seconds)
    jobs.append(
        (
            "liveness",
            liveness_query(
                names,
                window_range(since),
                pre_window,
                query.pre_migration_end,
                quiet=query.baseline_ref is not None,
            ),
        )
    )
    cp_seconds = max(since, (query.evaluated_at - cp_start).total_seconds())
    jobs.append(
        ("control_plane", control_plane_query(query.new_revision, window_range(cp_seconds)))
    )
    spans = [
        (index, names, window_range((query.evaluated_at - ready).total_seconds()))
        for index, names, ready in budget_batches
        if names and (query.evaluated_at - ready).total_seconds() >= 1
    ]
    if spans:
        for slo in query.slos:
            jobs.append((f"budget:{slo.name}", promql.budget_query(slo, spans)))
    m.query_count = len(jobs)
    if with_queries:
        m.queries = [text for _, text in jobs]
    for key, text in jobs:
        log.debug("gate PromQL %s: %s", key, text)

    answers = await asyncio.gather(
        *(instant_query(http, query.prometheus_url, text, query.evaluated_at) for _, text in jobs),
        return_exceptions=True,
    )
    seen: set[str] = set()
    for (key, _), answer in zip(jobs, answers, strict=True):
        if isinstance(answer, BaseException):
            message = str(answer) if isinstance(answer, PrometheusError) else repr(answer)
            if message not in seen:
                seen.add(message)
                m.errors.append(message)
            continue
        if key.startswith("sli:"):
            _, slo_name, window = key.split(":")
            slo = next(s for s in query.slos if s.name == slo_name)
            seconds = since if window == "since_warmup" else short
            m.slis.append(
                parse_sli(
                    slo,
                    "since_warmup" if window == "since_warmup" else "short",
                    seconds,
                    answer,
                    names,
                    m.errors,
                    missing=with_queries,
                )
            )
        elif key.startswith("budget:"):
            slo = next(s for s in query.slos if s.name == key.removeprefix("budget:"))
            current = query.baseline_ref.batch_index if query.baseline_ref else None
            budget = _parse_budget(slo, answer, spans, current)
            if budget is not None:
                m.budget.append(budget)
        elif key == "liveness":
            _parse_liveness(m, answer, since, pre_window)
        else:
            m.control_plane = _parse_control_plane(answer, cp_seconds, m.errors)
    return m


def _parse_budget(
    slo: SLOSpec,
    result: Sequence[dict[str, Any]],
    spans: Sequence[tuple[int, list[str], str]],
    current: int | None,
) -> BudgetCounts | None:
    """Fold one pooled series per batch and kind into the batch's and the running totals."""
    kinds: dict[int, dict[str, float]] = {}
    for series in result:
        labels = series.get("metric", {})
        value = _value(series)
        if math.isnan(value) or math.isinf(value) or "batch" not in labels:
            continue
        kinds.setdefault(int(labels["batch"]), {})[labels.get("kind", "total")] = value
    seconds = {index: float(window.rstrip("s")) for index, _, window in spans}
    out = BudgetCounts(slo=slo.name)
    for index, found in kinds.items():
        total = found.get("total", 0.0)
        if total <= 0:
            continue
        if isinstance(slo.sli, LatencySLI):
            bad = max(0.0, total - found.get("good", total))
        else:
            bad = min(found.get("bad", 0.0), total)
        bad = round(bad, 3)  # bucket and _count extrapolate apart by ~1e-9 requests
        out.all_bad += bad
        out.all_rate += total / seconds[index]
        if index == current:
            out.batch_bad, out.batch_total, out.batch_seconds = bad, total, seconds[index]
    return out if kinds else None


def _parse_liveness(
    m: GateMeasurements, result: Sequence[dict[str, Any]], since: float, pre_window: str | None
) -> None:
    pre_seconds = float(pre_window.rstrip("s")) if pre_window else 0.0
    if pre_seconds > 0:
        m.pre_migration_seconds = pre_seconds
    unknown: set[str] = set()
    for series in result:
        labels = series.get("metric", {})
        value = _value(series)
        if labels.get("window") == "restarts":
            if labels.get("namespace") and not math.isnan(value):
                m.restarts[labels["namespace"]] = value
            continue
        if labels.get("view") == "outbound":
            src = labels.get(promql.SOURCE_NS)
            if src is None or math.isnan(value):
                continue
            if labels.get("window") == "pre" and pre_seconds > 0:
                m.pre_migration_outbound_rate[src] = _rate(value, pre_seconds)
            elif labels.get("window") == "current":
                m.outbound_rate[src] = _rate(value, max(1.0, math.floor(since)))
            continue
        ns = labels.get(promql.DEST_NS)
        if ns is None:
            continue
        if math.isnan(value):
            unknown.add(ns)
            continue
        if labels.get("window") == "pre" and pre_seconds > 0:
            m.pre_migration_rate[ns] = _rate(value, pre_seconds)
        elif labels.get("window") == "current":
            m.request_rate[ns] = _rate(value, max(1.0, math.floor(since)))
    # The gate reads "a pre-migration rate but no current one" as traffic stopped; a NaN must
    # not pass for that, so such a namespace gets no liveness verdict at all.
    for ns in sorted(unknown):
        m.pre_migration_rate.pop(ns, None)
        m.request_rate.pop(ns, None)
        m.errors.append(f"liveness: the request rate of {ns} is NaN")


def _parse_control_plane(
    result: Sequence[dict[str, Any]], seconds: float, errors: list[str]
) -> ControlPlane:
    values: dict[str, float] = {}
    for series in result:
        metric = series.get("metric", {}).get("metric", "")
        value = _value(series)
        if math.isnan(value):
            errors.append(f"control plane: {metric} is NaN")
            continue
        values[metric] = value
    return ControlPlane(
        xds_rejects=values.get("xds_rejects"),
        xds_internal_errors=values.get("xds_internal_errors"),
        injection_failures=values.get("injection_failures"),
        xds_proxies=values.get("xds_proxies"),
        window_seconds=seconds,
    )


@activity.defn
async def measure_gate(query: GateQuery) -> GateMeasurements:
    """Count bad and total requests of a batch and its baseline, and control-plane health.

    One round trip per SLO per window (since warm-up and short) for every namespace of B
    and O at once, one for liveness (now and before migration, via ``@``), one for the new
    revision's control-plane counters; all evaluated at ``query.evaluated_at``.

    Args:
        query: Namespaces, revisions, windows and the Prometheus to ask.

    Returns:
        The measurements; problems are listed in ``errors``, never raised.
    """
    baseline: list[str] | None = None
    batch: list[str] | None = None
    budget: list[BudgetBatch] = []
    if query.baseline_ref is not None:
        try:
            baseline, batch, budget = await resolve_baseline(query.baseline_ref)
        except Exception as exc:  # the workflow's worker may be busy or restarting
            # Without O a global incident would look like the canary's fault: measure nothing.
            return GateMeasurements(
                batch_namespaces=[],
                baseline_namespaces=[],
                new_revision=query.new_revision,
                old_revision=query.old_revision,
                window_start=query.window_start,
                evaluated_at=query.evaluated_at,
                batch_count=query.batch_count,
                query_count=0,
                errors=[f"the baseline could not be read from the upgrade: {exc}"[:300]],
            )
    async with httpx.AsyncClient(timeout=query.timeout_seconds) as http:
        return await collect(
            query, http, baseline=baseline, batch=batch, budget_batches=budget, with_queries=False
        )


Resolved = tuple[list[str], list[str], list[BudgetBatch]]
"""O, B, and the migrated batches (budget windows) of one batch of one run."""

_RESOLVED: OrderedDict[tuple[str, int], Resolved] = OrderedDict()
"""Baselines read from upgrades, by (run id, batch index): fixed for a batch of a run."""
_RESOLVED_MAX = 256
QUERY_TIMEOUT_SECONDS = 10.0
"""Each query of the upgrade for its baseline; a failure leaves the evaluation without data."""


async def resolve_baseline(ref: BaselineRef) -> Resolved:
    """O, B and the migrated batches of the asking upgrade, from its queries (cached).

    ``gate_baseline`` gives the namespaces of the plan's batches after ``ref.batch_index``;
    ``progress`` gives B and each migrated batch's namespaces and Ready time (budget windows).
    Queries are answered by the workflow's worker and never recorded in its history.
    """
    key = (ref.run_id, ref.batch_index)
    cached = _RESOLVED.get(key)
    if cached is not None:
        _RESOLVED.move_to_end(key)
        return cached
    handle = activity.client().get_workflow_handle(ref.workflow_id, run_id=ref.run_id)
    # Bounded like a Prometheus round trip: a workflow worker that is down (or replaying a long
    # history) must not use up the step's whole start-to-close on one query.
    timeout = timedelta(seconds=QUERY_TIMEOUT_SECONDS)
    baseline = await handle.query(
        "gate_baseline", ref.batch_index, result_type=list[str], rpc_timeout=timeout
    )
    progress = await handle.query("progress", result_type=Progress, rpc_timeout=timeout)
    batches: list[BudgetBatch] = [
        (b.index, list(b.namespaces), b.ready_at)
        for b in progress.batches
        if b.index <= ref.batch_index and b.ready_at is not None and b.status != "rolled_back"
    ]
    own = [list(b.namespaces) for b in progress.batches if b.index == ref.batch_index]
    if not own:
        raise LookupError(f"the upgrade's progress has no batch {ref.batch_index}")
    resolved = (list(baseline), own[0], batches)
    if any(index == ref.batch_index for index, _, _ in batches):
        # Only once the batch's own Ready time is known is the answer final.
        _RESOLVED[key] = resolved
        while len(_RESOLVED) > _RESOLVED_MAX:
            _RESOLVED.popitem(last=False)
    return resolved


@activity.defn
async def query_revision_xds(prometheus_url: str, revision: str) -> float | None:
    """Proxies connected to a revision's istiod now (``sum(pilot_xds{revision=...})``).

    Args:
        prometheus_url: Prometheus base URL.
        revision: Istio revision, e.g. ``1-30-3``.

    Returns:
        The number of proxies, or None when Prometheus has no such series.

    Raises:
        ApplicationError: Prometheus could not answer (retryable: the cleanup must not
            guess that a revision is unused).
    """
    text = f"sum(pilot_xds{promql.selector([('revision', '=', revision)])})"
    async with httpx.AsyncClient(timeout=10.0) as http:
        try:
            result = await instant_query(http, prometheus_url, text)
        except PrometheusError as exc:
            raise ApplicationError(str(exc), type="PrometheusUnavailable") from exc
    if not result:
        return None
    value = _value(result[0])
    return None if math.isnan(value) else value


@activity.defn
async def probe_prometheus(prometheus_url: str) -> PrometheusProbe:
    """Whether the gate's Prometheus answers as the Prometheus API does, before any write.

    Returns:
        ``problem`` set when the URL answers, but not as Prometheus (an HTML page, a redirect,
        JSON of something else): a wrong URL that no retry fixes. ``reachable`` False when it
        does not answer at all, which may pass: the gate waits for it and never passes
        without it.
    """
    async with httpx.AsyncClient(timeout=10.0) as http:
        try:
            await instant_query(http, prometheus_url, "vector(1)")
        except PrometheusError as exc:
            if "not the Prometheus API" in str(exc):
                return PrometheusProbe(problem=str(exc))
            return PrometheusProbe(reachable=False, problem=str(exc))
    return PrometheusProbe()


async def wait_revision_disconnected(
    prometheus_url: str, revision: str, timeout_s: float = 30.0
) -> bool:
    """Wait until Prometheus has scraped that no proxy is connected to ``revision``'s istiod.

    For callers that just removed the revision's last proxy and are about to ask
    ``query_revision_xds`` through the removal; False when ``timeout_s`` passed first.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await query_revision_xds(prometheus_url, revision):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.5)
    return True
