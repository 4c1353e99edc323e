"""PromQL for the SLIs of an ``SLOSpec``, shared by the gate's activity and the rules generator.

Counts are ``sum by (<namespace label>) (increase(...[<window>]))`` so the gate can judge
every namespace of a batch from one round trip per SLO per window. Several sub-queries are
joined with ``or`` after ``label_replace`` tags each with ``kind`` (bad/good/total) and
``view`` (inbound/edge_old_to_new/outbound) labels: different tag values keep the series apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from istio_upgrade.models.slo import AvailabilitySLI, CustomSLI, LatencySLI, SLOSpec

REQUESTS = "istio_requests_total"
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
DURATION_COUNT = "istio_request_duration_milliseconds_count"
DEST_NS = "destination_workload_namespace"
SOURCE_NS = "source_workload_namespace"
BAD_HTTP_CODES = "5..|0"


def namespace_regex(namespaces: Iterable[str]) -> str:
    """``["a", "b"]`` → ``a|b`` (DNS-1123 names need no escaping)."""
    return "|".join(sorted(set(namespaces)))


def selector(matchers: Sequence[tuple[str, str, str]]) -> str:
    """``[("reporter", "=", "destination")]`` → ``{reporter="destination"}``.

    Values are escaped as PromQL string literals (backslash and double quote), so a value can
    never end its matcher and add PromQL of its own.
    """
    return "{" + ",".join(f'{k}{op}"{_escape(v)}"' for k, op, v in matchers) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def tag(expr: str, **labels: str) -> str:
    """Add constant labels to every series of ``expr`` (label_replace on an empty source)."""
    for key, value in labels.items():
        expr = f'label_replace({expr}, "{key}", "{value}", "", "")'
    return expr


def le_matcher(threshold_ms: float) -> tuple[str, str, str]:
    """Match a bucket edge whatever the exporter's float formatting (``250`` or ``250.0``)."""
    text = f"{threshold_ms:g}"
    if "." in text or "e" in text:
        return ("le", "=", text)
    return ("le", "=~", f"{text}|{text}\\\\.0")


def availability_bad(
    sli: AvailabilitySLI,
    base: Sequence[tuple[str, str, str]],
    by: str,
    window: str,
    fn: str = "increase",
) -> str:
    """Bad requests: HTTP 5xx or 0, plus gRPC failure statuses not already counted as HTTP."""
    http_bad = selector([*base, ("response_code", "=~", BAD_HTTP_CODES)])
    statuses = "|".join(str(s) for s in sli.grpc_failure_statuses)
    grpc_bad = selector(
        [
            *base,
            ("request_protocol", "=", "grpc"),
            ("response_code", "!~", BAD_HTTP_CODES),
            ("grpc_response_status", "=~", statuses),
        ]
    )
    return (
        f"sum by ({by}) ({fn}({REQUESTS}{http_bad}[{window}])"
        f" or {fn}({REQUESTS}{grpc_bad}[{window}]))"
    )


def availability_total(
    base: Sequence[tuple[str, str, str]], by: str, window: str, fn: str = "increase"
) -> str:
    return f"sum by ({by}) ({fn}({REQUESTS}{selector(base)}[{window}]))"


def availability_views(
    slo: SLOSpec,
    sli: AvailabilitySLI,
    batch: Sequence[str],
    baseline: Sequence[str],
    window: str,
    inbound_of: Sequence[str] | None = None,
) -> str:
    """Inbound for B and O (or only ``inbound_of``), the O→B edge and B's outbound, tagged
    by kind and view."""
    everyone = namespace_regex([*batch, *baseline] if inbound_of is None else inbound_of)
    b = namespace_regex(batch)
    parts: list[str] = []
    inbound = [("reporter", "=", slo.reporter), (DEST_NS, "=~", everyone)]
    parts.append(tag(availability_bad(sli, inbound, DEST_NS, window), kind="bad", view="inbound"))
    parts.append(tag(availability_total(inbound, DEST_NS, window), kind="total", view="inbound"))
    if baseline:
        edge = [
            ("reporter", "=", "source"),
            (SOURCE_NS, "=~", namespace_regex(baseline)),
            (DEST_NS, "=~", b),
        ]
        parts.append(
            tag(availability_bad(sli, edge, DEST_NS, window), kind="bad", view="edge_old_to_new")
        )
        parts.append(
            tag(availability_total(edge, DEST_NS, window), kind="total", view="edge_old_to_new")
        )
    outbound = [("reporter", "=", "source"), (SOURCE_NS, "=~", b)]
    parts.append(
        tag(availability_bad(sli, outbound, SOURCE_NS, window), kind="bad", view="outbound")
    )
    parts.append(
        tag(availability_total(outbound, SOURCE_NS, window), kind="total", view="outbound")
    )
    return "\n  or ".join(parts)


def latency_views(
    slo: SLOSpec, sli: LatencySLI, batch: Sequence[str], baseline: Sequence[str], window: str
) -> str:
    """Inbound total and good (≤ threshold) requests for B and O; bad = total - good."""
    base = [("reporter", "=", slo.reporter), (DEST_NS, "=~", namespace_regex([*batch, *baseline]))]
    good_sel = selector([*base, le_matcher(sli.threshold_ms)])
    good = f"sum by ({DEST_NS}) (increase({DURATION_BUCKET}{good_sel}[{window}]))"
    total = f"sum by ({DEST_NS}) (increase({DURATION_COUNT}{selector(base)}[{window}]))"
    return (
        tag(good, kind="good", view="inbound")
        + "\n  or "
        + tag(total, kind="total", view="inbound")
    )


def render_custom(query: str, namespaces: Sequence[str], window: str) -> str:
    """Substitute ``{{namespaces}}`` and ``{{window}}`` in a custom SLI query."""
    return query.replace("{{namespaces}}", namespace_regex(namespaces)).replace(
        "{{window}}", window
    )


def custom_views(sli: CustomSLI, batch: Sequence[str], baseline: Sequence[str], window: str) -> str:
    everyone = [*batch, *baseline]
    bad = tag(render_custom(sli.error_query, everyone, window), kind="bad", view="inbound")
    total = tag(render_custom(sli.total_query, everyone, window), kind="total", view="inbound")
    return f"{bad}\n  or {total}"


def sli_query(slo: SLOSpec, batch: Sequence[str], baseline: Sequence[str], window: str) -> str:
    """The one PromQL of an SLO over one window for a batch and its baseline."""
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        return availability_views(slo, sli, batch, baseline, window)
    if isinstance(sli, LatencySLI):
        return latency_views(slo, sli, batch, baseline, window)
    return custom_views(sli, batch, baseline, window)


POOL = "pool"
"""Label tagging a series that sums a whole set of namespaces (the baseline, a batch)."""


def _pooled(expr: str) -> str:
    """Sum every series of ``expr`` into one: Prometheus pools, the answer has one series."""
    return f"sum({expr})"


def pooled_counts(slo: SLOSpec, namespaces: Sequence[str], window: str) -> tuple[str, str]:
    """Bad (or, for latency, good) and total requests of ``namespaces`` summed into one series.

    Returns:
        ``(bad_or_good, total)`` PromQL; the first counts good requests for a latency SLI.
    """
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        base = [("reporter", "=", slo.reporter), (DEST_NS, "=~", namespace_regex(namespaces))]
        return (
            _pooled(availability_bad(sli, base, DEST_NS, window)),
            _pooled(availability_total(base, DEST_NS, window)),
        )
    if isinstance(sli, LatencySLI):
        base = [("reporter", "=", slo.reporter), (DEST_NS, "=~", namespace_regex(namespaces))]
        good_sel = selector([*base, le_matcher(sli.threshold_ms)])
        return (
            f"sum(increase({DURATION_BUCKET}{good_sel}[{window}]))",
            f"sum(increase({DURATION_COUNT}{selector(base)}[{window}]))",
        )
    return (
        _pooled(render_custom(sli.error_query, namespaces, window)),
        _pooled(render_custom(sli.total_query, namespaces, window)),
    )


def _first_kind(slo: SLOSpec) -> str:
    return "good" if isinstance(slo.sli, LatencySLI) else "bad"


def sli_query_pooled(
    slo: SLOSpec, batch: Sequence[str], baseline: Sequence[str], window: str
) -> str:
    """One PromQL of an SLO over one window: per-namespace counts for the batch only, the
    baseline pooled into one series per kind (tagged ``pool="baseline"``).

    The answer has at most (views x kinds) series per batch namespace plus two: its size and
    the work it records do not grow with the baseline.
    """
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        own = availability_views(slo, sli, batch, baseline, window, inbound_of=batch)
    elif isinstance(sli, LatencySLI):
        own = latency_views(slo, sli, batch, [], window)
    else:
        own = custom_views(sli, batch, [], window)
    if not baseline:
        return own
    first, total = pooled_counts(slo, baseline, window)
    pooled = [
        tag(first, kind=_first_kind(slo), view="inbound", **{POOL: "baseline"}),
        tag(total, kind="total", view="inbound", **{POOL: "baseline"}),
    ]
    return "\n  or ".join([own, *pooled])


def budget_query(slo: SLOSpec, batches: Sequence[tuple[int, Sequence[str], str]]) -> str:
    """Requests of each migrated batch since it went Ready, one pooled series per batch
    and kind (tagged ``batch``): ``batches`` holds ``(index, namespaces, window)``."""
    parts: list[str] = []
    kind = _first_kind(slo)
    for index, namespaces, window in batches:
        first, total = pooled_counts(slo, namespaces, window)
        parts.append(tag(first, kind=kind, batch=str(index)))
        parts.append(tag(total, kind="total", batch=str(index)))
    return "\n  or ".join(parts)
