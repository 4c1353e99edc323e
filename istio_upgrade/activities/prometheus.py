"""Activities that read the mesh's health from Prometheus for the safety gate.

``measure_gate`` never raises because Prometheus is down or has no data: it reports why in
``GateMeasurements.errors`` and the gate turns that into INCONCLUSIVE (never PASS). Counts
are never invented: a namespace without series is absent, not zero.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from istio_upgrade.models.activities import PrometheusProbe
from istio_upgrade.models.gate import (
    ControlPlane,
    Counts,
    GateMeasurements,
    GateQuery,
    SLIWindow,
    WindowName,
)
from istio_upgrade.models.slo import LatencySLI, SLOSpec
from istio_upgrade.slo import promql

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


def parse_sli(
    slo: SLOSpec,
    window: WindowName,
    seconds: float,
    result: Sequence[dict[str, Any]],
    batch: Sequence[str],
    errors: list[str],
) -> SLIWindow:
    """Fold tagged series into per-namespace counts; record NaN and missing namespaces."""
    raw: dict[tuple[str, str], dict[str, float]] = {}
    for series in result:
        labels = series.get("metric", {})
        ns = _namespace(labels)
        value = _value(series)
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
        getattr(out, view)[ns] = Counts(bad=bad, total=total)
    for ns in batch:
        if ns not in out.inbound:
            errors.append(
                f"no data: SLO {slo.name} has no inbound request series for namespace {ns} "
                f"over the last {window_range(seconds)} ({window})"
            )
    return out


def liveness_query(
    batch: Sequence[str], window: str, pre_window: str | None, pre_end: datetime | None
) -> str:
    """Inbound requests of each batch namespace now and before its migration."""
    sel = promql.selector(
        [("reporter", "=", "destination"), (promql.DEST_NS, "=~", promql.namespace_regex(batch))]
    )
    now = f"sum by ({promql.DEST_NS}) (increase({promql.REQUESTS}{sel}[{window}]))"
    query = promql.tag(now, window="current")
    if pre_window is not None and pre_end is not None:
        pre = (
            f"sum by ({promql.DEST_NS}) "
            f"(increase({promql.REQUESTS}{sel}[{pre_window}] @ {pre_end.timestamp():.3f}))"
        )
        query += "\n  or " + promql.tag(pre, window="pre")
    return query


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


async def collect(query: GateQuery, http: httpx.AsyncClient) -> GateMeasurements:
    """Measure everything the gate needs; see ``measure_gate``."""
    m = GateMeasurements(
        batch_namespaces=query.batch_namespaces,
        baseline_namespaces=query.baseline_namespaces,
        new_revision=query.new_revision,
        old_revision=query.old_revision,
        window_start=query.window_start,
        evaluated_at=query.evaluated_at,
        batch_count=query.batch_count,
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

    jobs: list[tuple[str, str]] = []
    for slo in query.slos:
        for name, seconds in windows:
            text = promql.sli_query(
                slo, query.batch_namespaces, query.baseline_namespaces, window_range(seconds)
            )
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
                query.batch_namespaces, window_range(since), pre_window, query.pre_migration_end
            ),
        )
    )
    cp_seconds = max(since, (query.evaluated_at - cp_start).total_seconds())
    jobs.append(
        ("control_plane", control_plane_query(query.new_revision, window_range(cp_seconds)))
    )
    m.queries = [text for _, text in jobs]

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
                    query.batch_namespaces,
                    m.errors,
                )
            )
        elif key == "liveness":
            _parse_liveness(m, answer, since, pre_window)
        else:
            m.control_plane = _parse_control_plane(answer, cp_seconds, m.errors)
    return m


def _parse_liveness(
    m: GateMeasurements, result: Sequence[dict[str, Any]], since: float, pre_window: str | None
) -> None:
    pre_seconds = float(pre_window.rstrip("s")) if pre_window else 0.0
    unknown: set[str] = set()
    for series in result:
        labels = series.get("metric", {})
        ns = labels.get(promql.DEST_NS)
        value = _value(series)
        if ns is None:
            continue
        if math.isnan(value):
            unknown.add(ns)
            continue
        if labels.get("window") == "pre" and pre_seconds > 0:
            m.pre_migration_rate[ns] = value / pre_seconds
        elif labels.get("window") == "current":
            m.request_rate[ns] = value / max(1.0, math.floor(since))
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
    async with httpx.AsyncClient(timeout=query.timeout_seconds) as http:
        return await collect(query, http)


@activity.defn
async def query_revision_xds(prometheus_url: str, revision: str) -> float | None:
    """Proxies connected to a revision's istiod now (``sum(pilot_xds{revision=...})``).

    Args:
        prometheus_url: Prometheus base URL.
        revision: Istio revision, e.g. ``1-23-4``.

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
