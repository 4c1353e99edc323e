"""The Temporal worker: the ``IstioCanaryUpgrade`` and ``IstioRevisionRemoval`` workflows and
every activity they call.

Configuration comes from the environment: ``TEMPORAL_ADDRESS`` (default ``localhost:7233``),
``TEMPORAL_NAMESPACE`` (``default``), ``TEMPORAL_TASK_QUEUE`` (``istio-upgrade``),
``TEMPORAL_TLS_CERT``/``TEMPORAL_TLS_KEY``/``TEMPORAL_TLS_CA`` (file paths, mutual TLS),
``TEMPORAL_TLS`` (``true``: TLS with the system roots), ``TEMPORAL_API_KEY`` (Temporal Cloud),
``KUBECONFIG`` (unset in a pod: the pod's service account), ``LOG_LEVEL`` and
``WORKER_GRACEFUL_SHUTDOWN_SECONDS`` (45).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from istio_upgrade.activities.kube import KubeActivities
from istio_upgrade.activities.prometheus import (
    measure_gate,
    probe_prometheus,
    query_revision_xds,
)
from istio_upgrade.client import ConnectionConfigError
from istio_upgrade.client import connect as client_connect
from istio_upgrade.logging import configure_logging
from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import TASK_QUEUE, IstioCanaryUpgrade

log = structlog.get_logger(__name__)

GRACEFUL_SHUTDOWN = timedelta(
    seconds=float(os.environ.get("WORKER_GRACEFUL_SHUTDOWN_SECONDS", "45"))
)
"""What a stopping worker gives running mutations (``WORKER_GRACEFUL_SHUTDOWN_SECONDS``); keep it
below the pod's ``terminationGracePeriodSeconds`` (60 in ``deploy/worker.yaml``), or the
kubelet kills the worker mid-write."""

HEARTBEAT_THROTTLE = timedelta(seconds=2)
"""Heartbeats reach the server at least this often: how soon a wait hears of an abort."""


def registered_activities(kube: KubeActivities) -> list[Callable[..., Any]]:
    """Every activity implementation the worker registers (each has a stub in
    :mod:`istio_upgrade.activities.interface`, which is what the workflows call)."""
    return [*kube.all(), measure_gate, query_revision_xds, probe_prometheus]


def build_worker(
    client: Client,
    *,
    task_queue: str = TASK_QUEUE,
    kubeconfig: str | None = None,
    max_workers: int = 16,
    graceful_shutdown: timedelta = GRACEFUL_SHUTDOWN,
) -> Worker:
    """A worker running the upgrade and removal workflows and their activities.

    Args:
        client: Connected Temporal client (with the pydantic data converter).
        task_queue: Task queue to poll.
        kubeconfig: kubeconfig path for the clusters; default ``KUBECONFIG``, else
            ``~/.kube/config``, else (in a pod) the pod's service account.
        max_workers: Threads for the blocking Kubernetes activities.
        graceful_shutdown: On shutdown, how long running activities may take to finish before
            they are cancelled; waits stop at once (they resume on another worker from their
            heartbeats), mutations finish.

    Returns:
        The worker; run it with ``await worker.run()`` or ``async with worker``.
    """
    kube = KubeActivities(kubeconfig)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[IstioCanaryUpgrade, IstioRevisionRemoval],
        activities=registered_activities(kube),
        activity_executor=ThreadPoolExecutor(max_workers=max_workers),
        max_concurrent_activities=max_workers,
        graceful_shutdown_timeout=graceful_shutdown,
        # A wait learns of its cancellation (an abort) from its next heartbeat's answer: at
        # the SDK's default throttle (0.8 x the 30 s heartbeat timeout) an abort would wait
        # up to 24 s for a rollout wait to stop.
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal as the environment says, with the pydantic data converter.

    The CLI's connection logic, so that worker and CLI agree on every ``TEMPORAL_*`` variable
    (``TEMPORAL_TLS=true`` included, which a worker behind a TLS frontend without an API key or
    a client certificate needs).
    """
    return await client_connect(address, namespace)


async def run() -> None:
    """Run the worker until SIGTERM or SIGINT, then finish in-flight tasks and exit."""
    client = await connect()
    task_queue = os.environ.get("TEMPORAL_TASK_QUEUE", TASK_QUEUE)
    worker = build_worker(client, task_queue=task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker started", task_queue=task_queue, namespace=client.namespace)
        await stop.wait()
        log.info(
            "worker stopping: waits hand over to other workers, mutations finish",
            grace_seconds=GRACEFUL_SHUTDOWN.total_seconds(),
        )
    log.info("worker stopped")


def main() -> None:
    """Entry point of ``istio-upgrade worker`` and ``python -m istio_upgrade.worker``."""
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        asyncio.run(run())
    except ConnectionConfigError as error:
        # A misconfigured Deployment should say which variable to fix, not print a traceback.
        log.error("cannot start the worker", error=str(error))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
