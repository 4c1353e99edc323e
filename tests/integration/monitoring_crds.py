"""The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs (``tests/data/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).resolve().parents[1] / "data" / "prometheus-operator"


def prometheus_operator_crds() -> list[dict[str, Any]]:
    """The CRDs ``deploy/components/monitoring`` needs, with their full upstream schemas."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRDS.glob("monitoring.coreos.com_*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs
