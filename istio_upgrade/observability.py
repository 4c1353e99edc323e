"""The worker's metrics, probes and log context.

Metrics: ONE scrape endpoint, the Temporal SDK's own Prometheus exporter (served by the SDK's
Rust core at ``WORKER_METRICS_ADDRESS``, ``0.0.0.0:9464`` in ``deploy/worker/worker.yaml``). Our
metrics are created on the same runtime's meter (``activity.metric_meter()``,
``workflow.metric_meter()``) rather than on a ``prometheus_client`` registry: a second HTTP
server would mean a second port in the pod, the Service and the ServiceMonitor, and two
endpoints that could disagree about whether the worker is up. The SDK's meter also skips
workflow metrics while a history replays, so a counter incremented by workflow code counts
each event once however often the workflow is replayed (sdk-python
``temporalio/worker/_workflow_instance.py``, ``_ReplaySafeMetricMeter``).

Counters end in ``_total`` (``counters_total_suffix``) as Prometheus names them; the SDK's own
then do too (``temporal_workflow_completed_total`` …).

Probes: a small aiohttp server at ``WORKER_HEALTH_ADDRESS`` (``0.0.0.0:8080`` in the pod) answers
``/healthz`` (liveness: the event loop answers) and ``/readyz`` (readiness: connected to
Temporal, every worker polling, not shutting down).

Both servers are off unless their variable is set: several workers on one machine (a
developer's, per-cluster workers beside a main one, a rolling restart in tests) would
otherwise fight over the ports, and a pod needs them named anyway for its probes and Service.

Logs: :class:`WorkerInterceptor` binds ``workflow_id``, ``run_id``, ``activity_type`` and
``attempt`` to structlog's context for the length of each activity, and counts the activity's
errors by kind (``istio_upgrade_activity_errors_total{activity,kind}``) without any activity
knowing. Workflow logs (``workflow.logger``) carry the same ids through
:func:`istio_upgrade.logging.temporal_context`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

log = structlog.get_logger(__name__)

METRICS_ADDRESS_ENV = "WORKER_METRICS_ADDRESS"
POD_METRICS_ADDRESS = "0.0.0.0:9464"
HEALTH_ADDRESS_ENV = "WORKER_HEALTH_ADDRESS"
POD_HEALTH_ADDRESS = "0.0.0.0:8080"
DISABLED = {"", "off", "none", "false"}
"""Values of either variable that turn its server off, like leaving it unset."""

ACTIVITY_ERRORS = "istio_upgrade_activity_errors"
"""Counter (``_total`` on the endpoint) of failed activity attempts, ``{activity, kind}``."""


class AddressError(ValueError):
    """A malformed ``WORKER_METRICS_ADDRESS`` or ``WORKER_HEALTH_ADDRESS``."""


def split_address(value: str, variable: str) -> tuple[str, int]:
    """``host:port`` (``:port`` for every interface) as a host and a port number.

    Raises:
        AddressError: Not ``host:port`` with a port in 1-65535; names the variable.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{variable}={value!r}: expected host:port, e.g. 0.0.0.0:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


def metrics_address(environ: dict[str, str] | None = None) -> str | None:
    """Where the SDK serves Prometheus metrics (``WORKER_METRICS_ADDRESS``), or None: off."""
    env = os.environ if environ is None else environ
    value = env.get(METRICS_ADDRESS_ENV, "").strip()
    if value.lower() in DISABLED:
        return None
    host, port = split_address(value, METRICS_ADDRESS_ENV)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def install_metrics_runtime(address: str | None) -> Runtime | None:
    """Make a runtime exporting Prometheus metrics at ``address`` the process's default.

    Every client and worker created afterwards (without a runtime of their own) reports there,
    our counters included. Call it before the first client connects: the default runtime
    cannot change once used.

    Raises:
        RuntimeError: A default runtime already exists (a client connected first).
    """
    if address is None:
        return None
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=address, counters_total_suffix=True)
        )
    )
    Runtime.set_default(runtime, error_if_already_set=True)
    return runtime


def error_kind(error: BaseException) -> str:
    """A bounded label for an activity's error: an ``ApplicationError``'s type (set by our
    activities, e.g. ``NotFound``), else the exception's class name."""
    if isinstance(error, ApplicationError) and error.type:
        return error.type
    if isinstance(error, (asyncio.CancelledError, CancelledError)):
        return "Cancelled"
    return type(error).__name__


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # bound_contextvars sets them in this task's context; the SDK runs a synchronous
        # activity in the thread pool with a copy of that context (sdk-python
        # temporalio/worker/_activity.py, ``copy_context().run``), so its logs carry them too.
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            attempt=info.attempt,
        ):
            try:
                return await self.next.execute_activity(input)
            except BaseException as error:
                activity.metric_meter().create_counter(
                    ACTIVITY_ERRORS, "Failed activity attempts by activity and error kind."
                ).add(1, {"activity": info.activity_type, "kind": error_kind(error)})
                raise


class WorkerInterceptor(Interceptor):
    """Binds the workflow and run ids to each activity's logs and counts its errors."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)


def worker_interceptors() -> list[Interceptor]:
    """The interceptors every worker of this process runs."""
    return [WorkerInterceptor()]


@dataclass
class Health:
    """What ``/readyz`` answers from: the workers once they run, and whether shutdown began."""

    workers: Sequence[Worker] = ()
    stopping: bool = False
    reasons: list[str] = field(default_factory=list)

    def ready(self) -> tuple[bool, str]:
        """Ready, and why (not)."""
        if self.stopping:
            return False, "shutting down"
        if not self.workers:
            return False, "not connected to Temporal yet"
        idle = [w.task_queue for w in self.workers if not w.is_running]
        if idle:
            return False, f"not polling: {', '.join(idle)}"
        return True, f"polling {', '.join(w.task_queue for w in self.workers)}"


HEALTH = web.AppKey("health", Health)


async def _healthz(request: web.Request) -> web.Response:
    # Answered by the event loop the workers run on: a blocked loop fails the probe.
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    ok, why = health.ready()
    return web.Response(status=200 if ok else 503, text=why + "\n")


async def serve_health(address: str | None, health: Health) -> web.AppRunner | None:
    """Serve ``/healthz`` and ``/readyz`` at ``address`` (``host:port``); None: not at all.

    Returns:
        The runner; ``await runner.cleanup()`` stops it.
    """
    if address is None:
        return None
    host, port = split_address(address, HEALTH_ADDRESS_ENV)
    app = web.Application()
    app[HEALTH] = health
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def health_address(environ: dict[str, str] | None = None) -> str | None:
    """Where the probes are served (``WORKER_HEALTH_ADDRESS``), or None: off."""
    env = os.environ if environ is None else environ
    value = env.get(HEALTH_ADDRESS_ENV, "").strip()
    if value.lower() in DISABLED:
        return None
    split_address(value, HEALTH_ADDRESS_ENV)
    return value


@dataclass
class Telemetry:
    """The process's metrics runtime and probe server, started by :func:`start`."""

    health: Health
    runner: web.AppRunner | None
    metrics_address: str | None

    def serving(self, workers: Sequence[Worker]) -> None:
        """The workers are running: ``/readyz`` now answers from them."""
        self.health.workers = list(workers)

    def stopping(self) -> None:
        """Shutdown began: ``/readyz`` fails from now on (the pod leaves its Service)."""
        self.health.stopping = True

    async def close(self) -> None:
        """Stop the probe server."""
        if self.runner is not None:
            await self.runner.cleanup()


async def start(environ: dict[str, str] | None = None) -> Telemetry:
    """Install the metrics runtime and serve the probes, as the environment says.

    Call before connecting to Temporal (the runtime must be the default before first use).

    Raises:
        AddressError: A malformed ``WORKER_METRICS_ADDRESS`` or ``WORKER_HEALTH_ADDRESS``.
    """
    metrics = metrics_address(environ)
    health_at = health_address(environ)
    install_metrics_runtime(metrics)
    health = Health()
    runner = await serve_health(health_at, health)
    log.info("telemetry", metrics_address=metrics, health_address=health_at)
    return Telemetry(health=health, runner=runner, metrics_address=metrics)
