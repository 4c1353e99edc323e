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
) -> str:
    """Inbound for B and O, the O→B edge and B's outbound, tagged by kind and view."""
    everyone = namespace_regex([*batch, *baseline])
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
