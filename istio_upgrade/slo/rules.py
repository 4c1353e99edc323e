"""Prometheus recording and multiwindow multi-burn-rate alerting rules for SLO specs.

Structure (the one Sloth and the SRE workbook use): per SLO, recording rules
``slo:sli_error:ratio_rate<window>`` per destination namespace for every window the alert
table needs; metadata rules (objective, error budget, current burn rate); and one alert per
severity that fires when *both* windows of any of its rows burn faster than the row's
multiple of the budget (page: 14.4x over 1h and 5m, 6x over 6h and 30m; ticket: 3x over
1d and 2h, 1x over 3d and 6h).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from istio_upgrade.models.slo import (
    AvailabilitySLI,
    LatencySLI,
    SLOSpec,
    format_duration,
    parse_duration,
)
from istio_upgrade.slo import promql

RECORDED_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
"""The windows of the default alert table; custom tables add theirs."""
ALL_NAMESPACES = [".+"]


def record_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def _windows(slo: SLOSpec) -> list[str]:
    """Recorded windows, normalised (``60m`` → ``1h``) and sorted by length."""
    names = {format_duration(parse_duration(w)) for w in RECORDED_WINDOWS}
    for alert in slo.alerts:
        names.add(format_duration(parse_duration(alert.long_window)))
        names.add(format_duration(parse_duration(alert.short_window)))
    return sorted(names, key=parse_duration)


def error_ratio_expr(slo: SLOSpec, window: str) -> str:
    """Error ratio of ``slo`` over ``window``, one series per destination namespace.

    A namespace without any bad series records 0 (not nothing), so dashboards and the
    ``and`` of two windows see every namespace that serves traffic.
    """
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        base = [("reporter", "=", slo.reporter), (promql.DEST_NS, "!=", "")]
        total = promql.availability_total(base, promql.DEST_NS, window, fn="rate")
        bad = promql.availability_bad(sli, base, promql.DEST_NS, window, fn="rate")
        return f"(\n  {bad}\n  or 0 * {total}\n)\n/\n{total}"
    if isinstance(sli, LatencySLI):
        base = [("reporter", "=", slo.reporter), (promql.DEST_NS, "!=", "")]
        good_sel = promql.selector([*base, promql.le_matcher(sli.threshold_ms)])
        good = f"sum by ({promql.DEST_NS}) (rate({promql.DURATION_BUCKET}{good_sel}[{window}]))"
        total = (
            f"sum by ({promql.DEST_NS}) "
            f"(rate({promql.DURATION_COUNT}{promql.selector(base)}[{window}]))"
        )
        return f"(\n  {total}\n  -\n  {good}\n)\n/\n{total}"
    bad = promql.render_custom(sli.error_query, ALL_NAMESPACES, window)
    total = promql.render_custom(sli.total_query, ALL_NAMESPACES, window)
    return f"(\n  {bad}\n)\n/\n(\n  {total}\n)"


def _budget(slo: SLOSpec) -> str:
    # 1 - 0.999 is 0.0010000000000000009 in floats; rules read better rounded.
    return f"{slo.error_budget:.6g}"


def _matcher(slo: SLOSpec) -> str:
    return promql.selector([("slo", "=", slo.name)])


def alert_name(slo: SLOSpec, severity: str) -> str:
    """``checkout-latency``, ``page`` → ``CheckoutLatencyErrorBudgetBurnPage``.

    One name per severity so routing and silences can tell the fast burn from the slow one.
    """
    words = re.split(r"[^a-zA-Z0-9]+", f"{slo.name} error budget burn {severity}")
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def _alert_expr(slo: SLOSpec, severity: str) -> str | None:
    rows = [a for a in slo.alerts if a.severity == severity]
    if not rows:
        return None
    budget = _budget(slo)
    clauses = []
    for row in rows:
        long_w = format_duration(parse_duration(row.long_window))
        short_w = format_duration(parse_duration(row.short_window))
        limit = f"({row.burn_rate:g} * {budget})"
        clauses.append(
            f"(\n  {record_name(long_w)}{_matcher(slo)} > {limit}\n  and\n"
            f"  {record_name(short_w)}{_matcher(slo)} > {limit}\n)"
        )
    return "\nor\n".join(clauses)


def slo_groups(slo: SLOSpec) -> list[dict[str, Any]]:
    """The three rule groups of one SLO: SLI recordings, metadata, alerts."""
    labels = {**slo.labels, "slo": slo.name}
    recordings = [
        {"record": record_name(w), "expr": error_ratio_expr(slo, w), "labels": dict(labels)}
        for w in _windows(slo)
    ]
    budget = _budget(slo)
    metadata: list[dict[str, Any]] = [
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective:g})", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": labels},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"{record_name('5m')}{_matcher(slo)} / {budget}",
            "labels": labels,
        },
    ]
    alerts = []
    for severity in ("page", "ticket"):
        expr = _alert_expr(slo, severity)
        if expr is None:
            continue
        alerts.append(
            {
                "alert": alert_name(slo, severity),
                "expr": expr,
                "labels": {**slo.labels, "slo": slo.name, "severity": severity},
                "annotations": {
                    "summary": (
                        f"{slo.name} ({slo.objective:g} over {slo.period}) is burning its "
                        f"error budget too fast ({severity})"
                    ),
                    "description": (
                        "Namespace {{ $labels.destination_workload_namespace }} has an error "
                        "ratio of {{ $value | humanizePercentage }} for SLO "
                        f"{slo.name}, above the {severity} burn-rate thresholds."
                    ),
                },
            }
        )
    prefix = f"istio-upgrade-slo-{slo.name}"
    return [
        {"name": f"{prefix}-sli-recordings", "rules": recordings},
        {"name": f"{prefix}-meta-recordings", "rules": metadata},
        {"name": f"{prefix}-alerts", "rules": alerts},
    ]


def render_rules(slos: Sequence[SLOSpec]) -> dict[str, Any]:
    """A Prometheus rule file (``groups:``) for every SLO."""
    return {"groups": [g for slo in slos for g in slo_groups(slo)]}


def render_crd(
    slos: Sequence[SLOSpec], name: str = "istio-upgrade-slos", namespace: str = "istio-system"
) -> dict[str, Any]:
    """The same groups as a Prometheus Operator ``PrometheusRule``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "istio-upgrade"},
        },
        "spec": render_rules(slos),
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the PromQL) as literal blocks, the way people write rules."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_yaml(doc: dict[str, Any]) -> str:
    """YAML for a rule file or CRD, PromQL in literal blocks."""
    return yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=100)
