"""Assembly of a sandbox: Kubernetes API, controllers and mesh on one HTTP port.

:class:`Sandbox` runs in the current event loop; :class:`SandboxProcess` runs one in a child
process (what tests, the demo and benchmarks use, so the cluster never competes with the code
under test for the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml
from aiohttp import web

from istio_sandbox.api import build_app
from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers import Controllers
from istio_sandbox.controllers.istiod import revision_ready
from istio_sandbox.faults import Faults
from istio_sandbox.mesh import Mesh
from istio_sandbox.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    new_cluster,
    populate_control_plane,
    populate_workloads,
)

BOOTSTRAP_TIMEOUT_S = 30.0


class SandboxStartError(RuntimeError):
    """The sandbox did not come up; the message carries the reason or its log tail."""


def kubeconfig_document(url: str, context: str = "sandbox") -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, no authentication."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    }


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for these files: they must never see half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class Sandbox:
    """One simulated cluster served over HTTP from the running event loop."""

    def __init__(self, scenario: Scenario, *, tick_s: float = 0.5) -> None:
        """Prepare a sandbox; nothing runs until :meth:`start`.

        Args:
            scenario: Topology, Istio install, traffic and faults to start with.
            tick_s: Period of the traffic model.
        """
        self.scenario = scenario
        self.tick_s = tick_s
        self._cluster: Cluster | None = None
        self._controllers: Controllers | None = None
        self._mesh: Mesh | None = None
        self._runner: web.AppRunner | None = None
        self._url = ""

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("the sandbox is not started")
        return self._cluster

    @property
    def mesh(self) -> Mesh:
        if self._mesh is None:
            raise RuntimeError("the sandbox is not started")
        return self._mesh

    @property
    def url(self) -> str:
        """Base URL of the API server, e.g. ``http://127.0.0.1:40123``."""
        if not self._url:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    async def _bootstrap_control_plane(self, cluster: Cluster, controllers: Controllers) -> None:
        """Install the scenario's revisions and wait until their istiod is Ready.

        The scenario's revisions were installed before the apps, as in a real cluster, so
        istiod gets no readiness delay here; the scenario's delay applies to later installs.
        """
        istiod_ready_s = cluster.timings.istiod_ready_s
        cluster.timings.istiod_ready_s = 0.0
        try:
            populate_control_plane(cluster, self.scenario)
            await controllers.start()
            deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
            pending = self.scenario.revision_names()
            while pending := [r for r in pending if not revision_ready(cluster, r)]:
                if time.monotonic() > deadline:
                    raise SandboxStartError(f"istiod of revisions {pending} never became Ready")
                await asyncio.sleep(0.02)
        finally:
            cluster.timings.istiod_ready_s = istiod_ready_s

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Build the cluster, start controllers and mesh, and serve.

        Args:
            host: Listen address.
            port: Listen port; 0 picks a free one.

        Returns:
            The API server URL.
        """
        cluster = self._cluster = new_cluster(self.scenario)
        self._controllers = Controllers(cluster)
        await self._bootstrap_control_plane(cluster, self._controllers)
        self._mesh = Mesh(cluster, self.scenario, tick_s=self.tick_s)
        populate_workloads(cluster, self.scenario)
        self._mesh.start()
        app = build_app(cluster)
        app.router.add_get("/metrics", self._mesh.handle_metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self._url = f"http://{host}:{bound[1]}"
        return self._url

    def write_kubeconfig(self, path: Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig pointing at this sandbox (context ``context``, no auth)."""
        _write_atomically(path, yaml.safe_dump(kubeconfig_document(self.url, context)))
        return path

    async def stop(self) -> None:
        """Stop serving, then the mesh and controllers. Idempotent."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._mesh is not None:
            await self._mesh.stop()
        if self._controllers is not None:
            await self._controllers.stop()
            self._controllers = None


async def _serve_until_signalled(
    scenario: Scenario,
    kubeconfig: Path,
    host: str,
    port: int,
    context: str,
    ready_file: Path | None,
) -> None:
    sandbox = Sandbox(scenario)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await sandbox.start(host, port)
        sandbox.write_kubeconfig(kubeconfig, context)
        print(f"sandbox {scenario.name!r} serving the Kubernetes API at {url}", flush=True)
        print(f"mesh metrics at {sandbox.metrics_url}", flush=True)
        print(f"kubeconfig written to {kubeconfig} (context {context})", flush=True)
        if ready_file is not None:
            ready = {
                "url": url,
                "metrics_url": sandbox.metrics_url,
                "kubeconfig": str(kubeconfig),
                "context": context,
                "pid": os.getpid(),
                "scenario": scenario.name,
            }
            _write_atomically(ready_file, json.dumps(ready))
        await stop.wait()
    finally:
        await sandbox.stop()


def run_up(
    scenario: str,
    kubeconfig: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    context: str = "sandbox",
    ready_file: Path | None = None,
) -> int:
    """Serve a sandbox in the foreground until SIGINT/SIGTERM.

    Args:
        scenario: Shipped scenario name or path to a scenario file.
        kubeconfig: Where to write the kubeconfig once serving.
        host: Listen address.
        port: Listen port; 0 picks a free one.
        context: Context (and cluster and user) name in the kubeconfig.
        ready_file: Optional file receiving ``{"url", "metrics_url", "kubeconfig", "pid"}``
            as JSON once serving.

    Returns:
        The process exit code: 0 after a clean stop, 2 for an unusable scenario.
    """
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as err:
        print(str(err), file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_signalled(loaded, kubeconfig, host, port, context, ready_file))
    except SandboxStartError as err:
        print(f"sandbox did not start: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"sandbox cannot listen on {host}:{port}: {err}", file=sys.stderr)
        return 1
    return 0


class SandboxProcess:
    """A sandbox in a child process; a context manager for tests, the demo and benchmarks.

    Example::

        with SandboxProcess("demo") as sandbox:
            subprocess.run(["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "get", "ns"])
    """

    def __init__(
        self,
        scenario: str | Path = "demo",
        *,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        context: str = "sandbox",
        startup_timeout_s: float = 60.0,
    ) -> None:
        """Prepare the child; nothing runs until :meth:`start`.

        Args:
            scenario: Shipped scenario name or path to a scenario file.
            workdir: Directory for the kubeconfig, ready file and log; default a new temp dir
                (removed on stop).
            host: Listen address.
            port: Listen port; 0 picks a free one.
            context: Kubeconfig context name.
            startup_timeout_s: How long to wait for the child to serve.
        """
        self.scenario = str(scenario)
        self.host = host
        self.port = port
        self.context = context
        self.startup_timeout_s = startup_timeout_s
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.log_path = self.workdir / "sandbox.log"
        self._ready_file = self.workdir / "ready.json"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: dict[str, Any] = {}
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return str(self._ready["url"])

    @property
    def metrics_url(self) -> str:
        return str(self._ready["metrics_url"])

    @property
    def pid(self) -> int:
        return int(self._ready["pid"])

    @property
    def address(self) -> str:
        """``host:port`` of the server, as a Prometheus scrape target."""
        return self.url.removeprefix("http://")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> SandboxProcess:
        """Spawn the child and wait until it serves.

        Raises:
            SandboxStartError: It exited or did not serve in time (with its log tail).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "istio_sandbox",
            "up",
            "--scenario",
            self.scenario,
            "--kubeconfig",
            str(self.kubeconfig),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--context",
            self.context,
            "--ready-file",
            str(self._ready_file),
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready_file.exists():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise SandboxStartError(f"sandbox exited with {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SandboxStartError(
                    f"sandbox not serving after {self.startup_timeout_s:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self._ready = json.loads(self._ready_file.read_text())
        self._http = httpx.Client(base_url=self.url, timeout=30.0)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the child (SIGTERM, then SIGKILL). Idempotent."""
        if self._http is not None:
            self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- admin endpoints --------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError("the sandbox process is not started")
        return self._http

    def healthz(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self._client().get("/healthz").status_code == 200
        return False

    def stats(self) -> dict[str, Any]:
        """``GET /sandbox/stats``: API requests by verb/resource/namespace."""
        response = self._client().get("/sandbox/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def reset_stats(self) -> None:
        self._client().post("/sandbox/stats/reset").raise_for_status()

    def faults(self) -> Faults:
        response = self._client().get("/sandbox/faults")
        response.raise_for_status()
        return Faults.model_validate(response.json())

    def set_faults(self, faults: Faults) -> None:
        """Replace every fault (API, rollout, traffic) at once."""
        response = self._client().put("/sandbox/faults", json=faults.model_dump(mode="json"))
        response.raise_for_status()

    def clear_faults(self) -> None:
        self._client().post("/sandbox/faults/clear").raise_for_status()

    def metrics(self) -> str:
        """The current ``/metrics`` page."""
        response = self._client().get("/metrics")
        response.raise_for_status()
        return response.text
