"""Prometheus text exposition (format 0.0.4) of the mesh and control-plane series."""

from __future__ import annotations

from collections.abc import Iterable

from istio_sandbox.mesh.traffic import (
    BUCKETS_MS,
    REQUEST_LABELS,
    TCP_LABELS,
    RequestSeries,
    SeriesKey,
    TcpSeries,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_text(names: Iterable[str], values: Iterable[str]) -> str:
    """``{a="x",b="y"}`` with the exposition format's escaping."""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_EDGES = [_num(e) for e in BUCKETS_MS]


def render_requests(series: dict[SeriesKey, RequestSeries]) -> list[str]:
    """``istio_requests_total`` and ``istio_request_duration_milliseconds`` for every series."""
    keys = sorted(series)
    inner = {k: labels_text(REQUEST_LABELS, k)[1:-1] for k in keys}
    lines = [
        "# HELP istio_requests_total Requests seen by the proxies.",
        "# TYPE istio_requests_total counter",
    ]
    lines += [f"istio_requests_total{{{inner[k]}}} {_num(series[k].count)}" for k in keys]
    lines += [
        "# HELP istio_request_duration_milliseconds Request durations seen by the proxies.",
        "# TYPE istio_request_duration_milliseconds histogram",
    ]
    for k in keys:
        s = series[k]
        labels = inner[k]
        for edge, value in zip(_EDGES, s.buckets, strict=True):
            # Rounded so float error never makes a bucket exceed +Inf or go backwards.
            lines.append(
                f'istio_request_duration_milliseconds_bucket{{{labels},le="{edge}"}} '
                f"{_num(round(min(value, s.count), 6))}"
            )
        lines.append(
            f'istio_request_duration_milliseconds_bucket{{{labels},le="+Inf"}} {_num(s.count)}'
        )
        lines.append(
            f"istio_request_duration_milliseconds_sum{{{labels}}} {_num(round(s.sum_ms, 3))}"
        )
        lines.append(f"istio_request_duration_milliseconds_count{{{labels}}} {_num(s.count)}")
    return lines


def render_family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    """One metric family from (labels, value) samples."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = labels_text(labels.keys(), labels.values()) if labels else ""
        lines.append(f"{name}{text} {_num(value)}")
    return lines


_TCP_FAMILIES = (
    ("istio_tcp_connections_opened_total", "opened", "TCP connections opened (ztunnel)."),
    ("istio_tcp_connections_closed_total", "closed", "TCP connections closed (ztunnel)."),
    ("istio_tcp_sent_bytes_total", "sent_bytes", "Bytes sent to the peer (ztunnel)."),
    ("istio_tcp_received_bytes_total", "received_bytes", "Bytes received (ztunnel)."),
)


def render_tcp(series: dict[SeriesKey, TcpSeries]) -> list[str]:
    """ztunnel's ``istio_tcp_*`` counters; nothing at all when no ambient traffic flowed."""
    if not series:
        return []
    keys = sorted(series)
    inner = {k: labels_text(TCP_LABELS, k)[1:-1] for k in keys}
    lines: list[str] = []
    for name, attr, help_text in _TCP_FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f"{name}{{{inner[k]}}} {_num(getattr(series[k], attr))}" for k in keys]
    return lines
