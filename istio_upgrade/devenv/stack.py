"""A whole local environment: sandbox clusters, a Prometheus per cluster, Temporal, a worker.

The demo uses it as is; integration tests use the same pieces through fixtures. Everything
started here is stopped by :meth:`DevStack.close`, in reverse order, even after errors and
even when the close itself is cancelled (a second Ctrl-C). The Temporal dev server and the
Prometheus servers also stop by themselves when this process dies, SIGKILL included
(:mod:`istio_upgrade.devenv.processes`). SIGTERM is the program's to handle: the demo turns it
into a cancellation with :func:`istio_upgrade.devenv.signals.sigterm_cancels`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from istio_sandbox.server import SandboxProcess
from istio_upgrade.devenv.kubeconfig import merge_kubeconfigs
from istio_upgrade.devenv.prometheus import PrometheusServer, ScrapeTarget
from istio_upgrade.devenv.temporal import LocalTemporal, start_dev_server

log = logging.getLogger(__name__)


@dataclass
class LocalCluster:
    """One sandbox cluster and the Prometheus that scrapes it."""

    name: str
    """Cluster name, also its kubeconfig context in the stack's merged kubeconfig."""
    scenario: str
    sandbox: SandboxProcess
    """The child process serving the cluster."""
    prometheus: PrometheusServer

    @property
    def api_url(self) -> str:
        """Base URL of the sandbox (Kubernetes API, ``/metrics``, ``/sandbox/...``)."""
        return self.sandbox.url

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url


class DevStack:
    """Local servers composed for the demo (and usable from tests).

    Args:
        run_dir: Directory for kubeconfigs and other files of the run.
        ui: Start the Temporal Web UI.
        ui_port: Web UI port; default 8233 when free.
    """

    def __init__(self, run_dir: Path, *, ui: bool = True, ui_port: int | None = None) -> None:
        self.run_dir = run_dir
        self.ui = ui
        self.ui_port = ui_port
        self.temporal: LocalTemporal | None = None
        self.clusters: dict[str, LocalCluster] = {}
        self._worker: Any = None
        self._closers: list[Any] = []

    @property
    def kubeconfig(self) -> Path:
        """The merged kubeconfig: one context per cluster, named after it."""
        return self.run_dir / "kubeconfig"

    @property
    def client(self) -> Client:
        if self.temporal is None:
            raise RuntimeError("Temporal is not started")
        return self.temporal.env.client

    async def start_temporal(self) -> LocalTemporal:
        """Start the Temporal dev server (with the Web UI when asked)."""
        self.temporal = await start_dev_server(
            ui=self.ui, ui_port=self.ui_port, log_file=self.run_dir / "temporal.log"
        )
        self._closers.append(self.temporal.shutdown)
        return self.temporal

    async def add_cluster(self, name: str, scenario: str | Path) -> LocalCluster:
        """Start a sandbox for ``scenario`` and a Prometheus scraping its ``/metrics`` every 1 s.

        The merged kubeconfig is rewritten with a context ``name`` for it.
        """
        sandbox = SandboxProcess(scenario, workdir=self.run_dir / name, context=name)
        starting = threading.Event()

        def start() -> None:
            try:
                sandbox.start()
            finally:
                starting.set()

        def stop() -> None:
            # A cancellation abandons the awaiting task, not the thread still in start():
            # stopping before that thread spawned the child would miss it.
            starting.wait()
            sandbox.stop()

        # Registered before starting, so a cancellation mid-start still stops the sandbox.
        self._closers.append(lambda: asyncio.to_thread(stop))
        # start()/stop() block while the child comes up or exits; keep the loop responsive.
        await asyncio.to_thread(start)
        prometheus = PrometheusServer(
            [ScrapeTarget(address=sandbox.address, job="sandbox", labels={"cluster": name})]
        )
        await prometheus.start()
        self._closers.append(prometheus.stop)
        cluster = LocalCluster(
            name=name, scenario=str(scenario), sandbox=sandbox, prometheus=prometheus
        )
        self.clusters[name] = cluster
        merge_kubeconfigs(
            {n: c.sandbox.kubeconfig for n, c in self.clusters.items()}, self.kubeconfig
        )
        return cluster

    async def start_worker(self) -> None:
        """Run an upgrade worker in this process, reaching the clusters by kubeconfig context."""
        from istio_upgrade.worker import build_worker

        self._worker = build_worker(self.client, kubeconfig=str(self.kubeconfig))
        runner = self._worker.__aenter__()
        await runner
        self._closers.append(self._stop_worker)

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.__aexit__(None, None, None)

    async def close(self) -> None:
        """Stop everything started, newest first; never raises for one failing stop.

        A cancellation while stopping (one that arrives during a stop) does not skip the
        remaining stops: each still runs, and the cancellation is re-raised at the end.
        """
        cancelled: asyncio.CancelledError | None = None
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except asyncio.CancelledError as error:
                cancelled = error
            except Exception:
                log.warning("stopping %s failed", closer, exc_info=True)
        if cancelled is not None:
            raise cancelled

    async def __aenter__(self) -> DevStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
