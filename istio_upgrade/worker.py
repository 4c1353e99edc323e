"""The Temporal worker: the ``IstioCanaryUpgrade`` and ``IstioRevisionRemoval`` workflows and
every activity they call.

A worker serves the main task queue (workflows and activities), and with ``--cluster NAME``
(repeatable) it serves those clusters' task queues ``istio-upgrade.cluster.<name>``
(activities only: it runs next to their API servers, with their credentials); ``--main``
adds the main queue to a ``--cluster`` worker. A cluster whose ``ClusterRef.task_queue`` is
set has every activity routed there (``workflows/steps.activity_task_queue``); the workflows
run on the main queue. See docs/fleet.md, "Per-cluster task queues (topology)".

Configuration comes from the environment: ``TEMPORAL_ADDRESS`` (default ``localhost:7233``),
``TEMPORAL_NAMESPACE`` (``default``), ``TEMPORAL_TASK_QUEUE`` (``istio-upgrade``),
``TEMPORAL_TLS_CERT``/``TEMPORAL_TLS_KEY``/``TEMPORAL_TLS_CA`` (file paths, mutual TLS),
``TEMPORAL_TLS`` (``true``: TLS with the system roots), ``TEMPORAL_API_KEY`` (Temporal Cloud),
``KUBECONFIG`` (unset in a pod: the pod's service account), ``LOG_LEVEL``,
``WORKER_GRACEFUL_SHUTDOWN_SECONDS`` (45), ``TEMPORAL_UI_URL`` (links in notifications), the
webhook URLs that specs' ``notifications`` name by ``url_env`` or ``url_file``;
``WORKER_METRICS_ADDRESS`` (the Prometheus endpoint) and ``WORKER_HEALTH_ADDRESS``
(``/healthz`` and ``/readyz``), both ``host:port`` and off unless set, see
:mod:`istio_upgrade.observability`. Worker Versioning: ``WORKER_VERSIONING`` (``off`` or
``on``), ``WORKER_DEPLOYMENT_NAME`` (``istio-upgrade``) and ``WORKER_BUILD_ID`` (the package
version); see :mod:`istio_upgrade.versioning`. Only the workers that run workflows register the
version: activity-only cluster queues stay unversioned, so that a cluster's worker need not be
redeployed in step with the main one.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig

from istio_upgrade import observability
from istio_upgrade.activities.fleet import follow_upgrade
from istio_upgrade.activities.kube import KubeActivities
from istio_upgrade.activities.notify import notify
from istio_upgrade.activities.prometheus import (
    measure_gate,
    probe_prometheus,
    query_revision_xds,
)
from istio_upgrade.client import ConnectionConfigError
from istio_upgrade.client import connect as client_connect
from istio_upgrade.logging import configure_logging
from istio_upgrade.models.spec import check_dns1123, check_task_queue, cluster_task_queue
from istio_upgrade.process_exit import exit_without_finalization, report_native_crashes
from istio_upgrade.versioning import VersioningConfigError, VersioningSettings, settings_from_env
from istio_upgrade.workflows.fleet import FleetRollout
from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import TASK_QUEUE, IstioCanaryUpgrade

log = structlog.get_logger(__name__)

GRACEFUL_SHUTDOWN = timedelta(
    seconds=float(os.environ.get("WORKER_GRACEFUL_SHUTDOWN_SECONDS", "45"))
)
"""What a stopping worker gives running mutations (``WORKER_GRACEFUL_SHUTDOWN_SECONDS``); keep it
below the pod's ``terminationGracePeriodSeconds`` (60 in ``deploy/worker/worker.yaml``), or the
kubelet kills the worker mid-write."""

HEARTBEAT_THROTTLE = timedelta(seconds=2)
"""Heartbeats reach the server at least this often: how soon a wait hears of an abort."""


def registered_activities(kube: KubeActivities) -> list[Callable[..., Any]]:
    """Every activity implementation the worker registers (each has a stub in
    :mod:`istio_upgrade.activities.interface`, which is what the workflows call)."""
    return [
        *kube.all(),
        measure_gate,
        query_revision_xds,
        probe_prometheus,
        follow_upgrade,
        notify,
    ]


def registered_workflows() -> list[type]:
    """Every workflow a main-queue worker runs."""
    return [
        IstioCanaryUpgrade,
        IstioRevisionRemoval,
        FleetRollout,
    ]


def build_worker(
    client: Client,
    *,
    task_queue: str = TASK_QUEUE,
    kubeconfig: str | None = None,
    max_workers: int = 16,
    graceful_shutdown: timedelta = GRACEFUL_SHUTDOWN,
    workflows: bool = True,
    deployment: WorkerDeploymentConfig | None = None,
) -> Worker:
    """A worker running the upgrade and removal workflows and their activities.

    Args:
        client: Connected Temporal client (with the pydantic data converter).
        task_queue: Task queue to poll.
        workflows: Run the workflows too; False for a cluster's task queue, which serves
            activities only.
        kubeconfig: kubeconfig path for the clusters; default ``KUBECONFIG``, else
            ``~/.kube/config``, else (in a pod) the pod's service account.
        max_workers: Threads for the blocking Kubernetes activities.
        graceful_shutdown: On shutdown, how long running activities may take to finish before
            they are cancelled; waits stop at once (they resume on another worker from their
            heartbeats), mutations finish.
        deployment: The Worker Deployment Version to register
            (``VersioningSettings.deployment_config()``); None for an unversioned worker.

    Returns:
        The worker; run it with ``await worker.run()`` or ``async with worker``.
    """
    kube = KubeActivities(kubeconfig)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=registered_workflows() if workflows else [],
        activities=registered_activities(kube),
        activity_executor=ThreadPoolExecutor(max_workers=max_workers),
        max_concurrent_activities=max_workers,
        graceful_shutdown_timeout=graceful_shutdown,
        # A wait learns of its cancellation (an abort) from its next heartbeat's answer: at
        # the SDK's default throttle (0.8 x the 30 s heartbeat timeout) an abort would wait
        # up to 24 s for a rollout wait to stop.
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        interceptors=observability.worker_interceptors(),
        deployment_config=deployment,
    )


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal as the environment says, with the pydantic data converter.

    The CLI's connection logic, so that worker and CLI agree on every ``TEMPORAL_*`` variable
    (``TEMPORAL_TLS=true`` included, which a worker behind a TLS frontend without an API key or
    a client certificate needs).
    """
    return await client_connect(address, namespace)


def worker_queues(
    clusters: Sequence[str] = (),
    *,
    main: bool | None = None,
    main_queue: str = TASK_QUEUE,
    activity_queues: Sequence[str] = (),
) -> list[tuple[str, bool]]:
    """The task queues one worker process polls, each with whether it runs workflows.

    Args:
        clusters: Clusters whose queues (``cluster_task_queue``) this worker serves.
        main: Serve the main queue too; default: only when no cluster or queue is named.
        main_queue: The main queue (``TEMPORAL_TASK_QUEUE``).
        activity_queues: Further activity-only queues (a ``ClusterRef.task_queue`` that does
            not follow the naming rule).

    Raises:
        ValueError: A cluster name that is not a DNS-1123 label, or a queue named twice.
    """
    queues: list[tuple[str, bool]] = []
    for name in clusters:
        check_dns1123(name, "--cluster")
        queues.append((cluster_task_queue(name), False))
    for queue in activity_queues:
        queues.append((check_task_queue(queue, "--activity-queue"), False))
    if main if main is not None else not queues:
        queues.insert(0, (main_queue, True))
    names = [q for q, _ in queues]
    duplicates = sorted({q for q in names if names.count(q) > 1})
    if duplicates:
        raise ValueError(f"task queue named twice: {', '.join(duplicates)}")
    return queues


def build_workers(
    client: Client,
    queues: Sequence[tuple[str, bool]],
    *,
    kubeconfig: str | None = None,
    max_workers: int = 16,
    versioning: VersioningSettings | None = None,
) -> list[Worker]:
    """One ``Worker`` per queue of ``worker_queues`` (a Temporal worker polls one queue).

    ``versioning`` applies to the queues that run workflows only (see the module docstring).
    """
    deployment = versioning.deployment_config() if versioning else None
    return [
        build_worker(
            client,
            task_queue=queue,
            kubeconfig=kubeconfig,
            max_workers=max_workers,
            workflows=workflows,
            deployment=deployment if workflows else None,
        )
        for queue, workflows in queues
    ]


async def run(
    clusters: Sequence[str] = (),
    *,
    main: bool | None = None,
    activity_queues: Sequence[str] = (),
) -> None:
    """Run the worker until SIGTERM or SIGINT, then finish in-flight tasks and exit.

    Args:
        clusters: Serve these clusters' task queues (activities only).
        main: Also serve the main queue (default: only without ``clusters``).
        activity_queues: Further activity-only queues.
    """
    queues = worker_queues(
        clusters,
        main=main,
        main_queue=os.environ.get("TEMPORAL_TASK_QUEUE", TASK_QUEUE),
        activity_queues=activity_queues,
    )
    versioning = settings_from_env()
    # Before connecting: the SDK's metrics runtime must be the default before its first use.
    telemetry = await observability.start()
    try:
        await _serve(queues, telemetry, versioning)
    finally:
        await telemetry.close()


async def _serve(
    queues: Sequence[tuple[str, bool]],
    telemetry: observability.Telemetry,
    versioning: VersioningSettings,
) -> None:
    """Run ``queues``' workers until SIGTERM or SIGINT (see :func:`run`)."""
    client = await connect()
    workers = build_workers(client, queues, versioning=versioning)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for queue, workflows in queues:
        log.info(
            "worker started",
            task_queue=queue,
            serves="workflows and activities" if workflows else "activities only",
            namespace=client.namespace,
            version=versioning.version.to_canonical_string()
            if workflows and versioning.enabled
            else "unversioned",
        )
    running = [asyncio.ensure_future(w.run()) for w in workers]
    telemetry.serving(workers)
    stopping = asyncio.ensure_future(stop.wait())
    # A worker that ends on its own (a fatal poll error) stops the process too.
    await asyncio.wait([stopping, *running], return_when=asyncio.FIRST_COMPLETED)
    telemetry.stopping()
    log.info(
        "worker stopping: waits hand over to other workers, mutations finish",
        grace_seconds=GRACEFUL_SHUTDOWN.total_seconds(),
    )
    # All at once, so that the grace period is not spent once per queue.
    await asyncio.gather(*(w.shutdown() for w in workers if not w.is_shutdown))
    stopping.cancel()
    for result in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    log.info("worker stopped")


def main(
    clusters: Sequence[str] = (),
    *,
    main_queue: bool | None = None,
    activity_queues: Sequence[str] = (),
) -> None:
    """Entry point of ``istio-upgrade worker`` and ``python -m istio_upgrade.worker``."""
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    # A crash in native code (the SDK's core, a client library) then leaves every thread's Python
    # stack in the pod's log instead of a bare exit code.
    report_native_crashes()
    try:
        asyncio.run(run(clusters, main=main_queue, activity_queues=activity_queues))
    except (ConnectionConfigError, observability.AddressError, VersioningConfigError) as error:
        # A misconfigured Deployment should say which variable to fix, not print a traceback.
        log.error("cannot start the worker", error=str(error))
        raise SystemExit(2) from None
    # Every worker has shut down and its activities have finished or handed over: nothing is
    # left to do, and a crash in the interpreter's finalization would read as a failed pod.
    exit_without_finalization(0)


if __name__ == "__main__":
    main()
