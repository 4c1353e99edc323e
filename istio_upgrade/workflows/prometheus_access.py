"""Which ``PrometheusAuth`` a workflow hands its Prometheus activities.

The spec's references (files and environment variables of the worker) travel with each
activity's input; the worker resolves them when the activity runs, so no secret is ever in
history. Patched (``prometheus-auth``) and asked only when the spec names credentials:
upgrades without them schedule exactly what they did before, and replay unchanged.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.prometheus_auth import PrometheusAuth

PROMETHEUS_AUTH = "prometheus-auth"
"""Patch: Prometheus activities are given the spec's ``prometheus_auth``."""


def prometheus_auth(auth: PrometheusAuth | None) -> PrometheusAuth | None:
    """``auth`` for the activity's input, or None when the spec names none."""
    if auth is None or not workflow.patched(PROMETHEUS_AUTH):
        return None
    return auth
