"""Evaluate the gate once against a live Prometheus and show the result as a table.

The same ``measure_gate`` / ``evaluate_gate`` pair the workflow runs, with a window that
ends now. One evaluation cannot confirm a signal over two, so a one-shot check fails on
the first sighting (``confirmations=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from istio_upgrade.activities import prometheus_http
from istio_upgrade.activities.prometheus import collect
from istio_upgrade.activities.prometheus_http import CredentialError, redact
from istio_upgrade.models.gate import GateMeasurements, GateQuery, GateResult, GateSpec
from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.workflows.gate import evaluate_gate

VERDICT_STYLE = {"PASS": "green", "FAIL": "bold red", "INCONCLUSIVE": "yellow"}


async def check_once(
    slos: Sequence[SLOSpec],
    prometheus_url: str,
    namespaces: Sequence[str],
    baseline: Sequence[str] = (),
    window_seconds: float = 300.0,
    short_window_seconds: float = 300.0,
    revision: str = "",
    now: datetime | None = None,
    timeout_seconds: float = 10.0,
    auth: PrometheusAuth | None = None,
) -> GateResult:
    """Measure and judge ``namespaces`` against ``baseline`` over the last ``window_seconds``.

    Args:
        slos: The SLOs to judge.
        prometheus_url: Prometheus base URL.
        namespaces: The batch (B).
        baseline: Namespaces to compare with (O).
        window_seconds: The since-warm-up window, ending now.
        short_window_seconds: The short window (capped by ``window_seconds``).
        revision: Istio revision whose control-plane counters to check; empty skips them.
        now: Evaluation instant (default: the current time).
        timeout_seconds: Per-query timeout.
        auth: How to authenticate to Prometheus (references read here, as the worker does).

    Returns:
        The gate's result; Prometheus problems make it INCONCLUSIVE, never raise.
    """
    at = now or datetime.now(UTC)
    short = min(short_window_seconds, window_seconds)
    spec = GateSpec(
        slos=list(slos),
        prometheus_url=prometheus_url,
        confirmations=1,
        short_window_seconds=short,
        query_timeout_seconds=timeout_seconds,
    )
    query = GateQuery(
        prometheus_url=prometheus_url,
        slos=list(slos),
        batch_namespaces=list(namespaces),
        baseline_namespaces=[ns for ns in baseline if ns not in namespaces],
        new_revision=revision,
        old_revision="",
        window_start=at - timedelta(seconds=window_seconds),
        evaluated_at=at,
        short_window_seconds=short,
        timeout_seconds=timeout_seconds,
    )
    try:
        options = prometheus_http.client_options(auth, prometheus_url)
    except CredentialError as exc:
        unmeasured = GateMeasurements(
            batch_namespaces=list(namespaces),
            baseline_namespaces=[],
            new_revision=revision,
            old_revision="",
            window_start=query.window_start,
            evaluated_at=at,
            errors=[str(exc)],
        )
        return evaluate_gate(spec, unmeasured, [])
    async with prometheus_http.client(options, timeout_seconds) as http:
        measurements = await collect(query, http)
    measurements.errors = [redact(e, options.secrets) for e in measurements.errors]
    return evaluate_gate(spec, measurements, [])


def render_result(result: GateResult, console: Console, show_queries: bool = False) -> None:
    """Print the verdict, a per-namespace table, the reasons and optionally the PromQL."""
    slo_names = sorted({name for g in result.namespaces.values() for name in g.burn_rates})
    table = Table(title=f"SLO gate at {result.evaluated_at.isoformat(timespec='seconds')}")
    table.add_column("namespace")
    table.add_column("verdict")
    table.add_column("requests", justify="right")
    table.add_column("min", justify="right")
    for name in slo_names:
        table.add_column(f"{name} burn", justify="right")
        table.add_column("short", justify="right")
        table.add_column("z", justify="right")
    for ns, gate in sorted(result.namespaces.items()):
        cells = [
            ns,
            f"[{VERDICT_STYLE[gate.verdict]}]{gate.verdict}[/]",
            f"{gate.requests:,.0f}",
            str(gate.min_requests),
        ]
        for name in slo_names:
            cells.append(_num(gate.burn_rates.get(name), "x"))
            cells.append(_num(gate.short_burn_rates.get(name), "x"))
            cells.append(_num(gate.z_scores.get(name), ""))
        table.add_row(*cells)
    console.print(table)
    for ns, gate in sorted(result.namespaces.items()):
        console.print(f"  {ns}: {gate.reason.removeprefix(f'{ns}: ')}", highlight=False)
    allowed = ", ".join(f"{k} {v:.3g}x" for k, v in result.allowed_burn.items())
    baseline = ", ".join(f"{k} {v:.3g}x" for k, v in result.baseline_burn_rates.items())
    console.print(f"allowed burn: {allowed}" + (f"; baseline burn: {baseline}" if baseline else ""))
    style = VERDICT_STYLE[result.verdict]
    console.print(f"verdict: [{style}]{result.verdict}[/]")
    for reason in result.reasons:
        console.print(f"  - {reason}", highlight=False)
    if show_queries:
        for text in result.queries:
            console.print(text, highlight=False, markup=False)
            console.print()


def _num(value: float | None, suffix: str) -> str:
    return "-" if value is None else f"{value:.3g}{suffix}"
