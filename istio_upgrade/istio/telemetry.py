"""Istio's standard telemetry: the request-duration histogram's bucket edges."""

from __future__ import annotations

ENVOY_BUCKET_EDGES_MS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)
"""Upper bounds (``le``) of ``istio_request_duration_milliseconds``; ``+Inf`` is implicit.

A latency SLI can only count "slower than X" exactly when X is one of these edges.
"""
