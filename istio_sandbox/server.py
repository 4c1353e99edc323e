"""Assembly of a sandbox: Kubernetes API, controllers and mesh on one HTTP port.

:class:`Sandbox` runs in the current event loop; :class:`SandboxProcess` runs one in a child
process (what tests, the demo and benchmarks use, so the cluster never competes with the code
under test for the loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import yaml
from aiohttp import web

from istio_sandbox.api import build_app
from istio_sandbox.api.admin import token_subject
from istio_sandbox.api.errors import ApiError
from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers import Controllers
from istio_sandbox.controllers.istiod import revision_ready
from istio_sandbox.faults import Faults
from istio_sandbox.identity import IssuedToken
from istio_sandbox.mesh import Mesh
from istio_sandbox.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    new_cluster,
    populate_control_plane,
    populate_workloads,
)
from istio_sandbox.state import STATE_VERSION, read_state, write_state
from istio_sandbox.state import restore as restore_state
from istio_sandbox.tls import Certificate, TLSUnavailable, ensure_certificate

BOOTSTRAP_TIMEOUT_S = 30.0
_T = TypeVar("_T")


class SandboxStartError(RuntimeError):
    """The sandbox did not come up; the message carries the reason or its log tail."""


def kubeconfig_document(
    url: str, context: str = "sandbox", token: str | None = None, ca_pem: bytes | None = None
) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context; the user has ``token:`` when given,
    no credentials (``system:admin``) otherwise; ``ca_pem`` is the HTTPS server's CA."""
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token} if token else {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    }


TokenLike = str | IssuedToken


def _token_request(
    user: str | None, groups: Sequence[str], service_account: str | tuple[str, str] | None
) -> dict[str, Any]:
    """The ``POST /sandbox/tokens`` body for :meth:`Sandbox.issue_token` arguments."""
    if service_account is not None:
        if isinstance(service_account, str):
            ns, sep, name = service_account.partition("/")
            if not sep:
                raise ValueError(f"service_account {service_account!r}: use 'namespace/name'")
        else:
            ns, name = service_account
        body: dict[str, Any] = {"serviceAccount": {"namespace": ns, "name": name}}
        if user is not None or groups:
            raise ValueError("give a user (with groups) or a service_account, not both")
        return body
    if user is None:
        raise ValueError("give a user or a service_account")
    return {"user": user, "groups": list(groups)}


def _token_text(token: TokenLike) -> str:
    return token.token if isinstance(token, IssuedToken) else token


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for these files: they must never see half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class Sandbox:
    """One simulated cluster served over HTTP (and HTTPS, for token kubeconfigs) from the
    running event loop."""

    def __init__(
        self, scenario: Scenario, *, tick_s: float = 0.5, rbac: bool | None = None
    ) -> None:
        """Prepare a sandbox; nothing runs until :meth:`start`.

        Args:
            scenario: Topology, Istio install, traffic and faults to start with.
            tick_s: Period of the traffic model.
            rbac: Enforce RBAC (True) or not (False); None = as the scenario says.
        """
        self.scenario = scenario
        self.tick_s = tick_s
        self.rbac = rbac
        self._cluster: Cluster | None = None
        self._controllers: Controllers | None = None
        self._mesh: Mesh | None = None
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._https_url = ""
        self._certificate: Certificate | None = None
        self._tls_tmp: Path | None = None

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

    @property
    def https_url(self) -> str:
        """The same API over HTTPS (``https://127.0.0.1:40124``); "" when not served."""
        return self._https_url

    @property
    def ca_pem(self) -> bytes | None:
        """The HTTPS listener's self-signed certificate (PEM); None when not served."""
        return self._certificate.pem() if self._certificate is not None else None

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

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state: dict[str, Any] | None = None,
        https_port: int | None = 0,
        tls_dir: Path | None = None,
    ) -> str:
        """Build the cluster, start controllers and mesh, and serve.

        Args:
            host: Listen address.
            port: Listen port; 0 picks a free one.
            state: A :func:`istio_sandbox.state.snapshot` to serve instead of building the
                scenario's objects (an API server restarting on its etcd).
            https_port: Also serve the API over HTTPS on this port (0 picks a free one;
                None: HTTP only). Without the ``openssl`` command, HTTP only.
            tls_dir: Where the HTTPS certificate is kept (made when absent); default a
                temporary directory.

        Returns:
            The API server URL.
        """
        cluster = self._cluster = new_cluster(self.scenario)
        if self.rbac is not None:
            cluster.rbac_enforced = self.rbac
        if state is not None:
            restore_state(cluster, state)
        self._controllers = Controllers(cluster)
        if state is None:
            await self._bootstrap_control_plane(cluster, self._controllers)
        else:
            await self._controllers.start()
        self._mesh = Mesh(cluster, self.scenario, tick_s=self.tick_s)
        if state is None:
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
        if https_port is not None:
            await self._serve_https(host, https_port, tls_dir)
        return self._url

    async def _serve_https(self, host: str, port: int, tls_dir: Path | None) -> None:
        assert self._runner is not None
        if tls_dir is None:
            self._tls_tmp = tls_dir = Path(tempfile.mkdtemp(prefix="sandbox-tls-"))
        try:
            self._certificate = ensure_certificate(tls_dir, host)
        except TLSUnavailable as err:
            print(f"not serving HTTPS: {err}", file=sys.stderr, flush=True)
            return
        site = web.TCPSite(self._runner, host, port, ssl_context=self._certificate.server_context())
        await site.start()
        bound = self._runner.addresses[-1]
        self._https_url = f"https://{host}:{bound[1]}"

    def write_kubeconfig(self, path: Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig pointing at this sandbox (context ``context``, no auth)."""
        _write_atomically(path, yaml.safe_dump(kubeconfig_document(self.url, context)))
        return path

    def issue_token(
        self,
        user: str | None = None,
        groups: Sequence[str] = (),
        *,
        service_account: str | tuple[str, str] | None = None,
    ) -> IssuedToken:
        """A bearer token for ``user`` (in ``groups``) or ``service_account``
        (``"namespace/name"`` or a tuple), as ``POST /sandbox/tokens`` issues it."""
        try:
            subject = token_subject(_token_request(user, groups, service_account))
        except ApiError as err:
            raise ValueError(err.message) from None
        token = self.cluster.tokens.issue(subject)
        return IssuedToken(token, subject.name, subject.groups)

    def write_kubeconfig_for(self, token: TokenLike, path: Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig whose user authenticates with ``token``: against the HTTPS
        listener (kubectl sends credentials only over TLS), or plain HTTP without one."""
        server = self.https_url or self.url
        doc = kubeconfig_document(server, context, _token_text(token), self.ca_pem)
        _write_atomically(path, yaml.safe_dump(doc))
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
        if self._tls_tmp is not None:
            shutil.rmtree(self._tls_tmp, ignore_errors=True)
            self._tls_tmp = None


async def _serve_until_signalled(
    scenario: Scenario,
    kubeconfig: Path,
    host: str,
    port: int,
    context: str,
    ready_file: Path | None,
    rbac: bool | None = None,
    state_file: Path | None = None,
    state: dict[str, Any] | None = None,
    https_port: int | None = 0,
    tls_dir: Path | None = None,
) -> None:
    sandbox = Sandbox(scenario, rbac=rbac)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = False
    try:
        url = await sandbox.start(host, port, state=state, https_port=https_port, tls_dir=tls_dir)
        started = True
        sandbox.write_kubeconfig(kubeconfig, context)
        how = "restored from its state file" if state is not None else "serving"
        print(f"sandbox {scenario.name!r} {how}: the Kubernetes API at {url}", flush=True)
        if sandbox.https_url:
            print(f"the same over HTTPS (for token kubeconfigs) at {sandbox.https_url}", flush=True)
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
                "restored": state is not None,
                "https_url": sandbox.https_url,
                "ca_pem": (sandbox.ca_pem or b"").decode(),
            }
            _write_atomically(ready_file, json.dumps(ready))
        await stop.wait()
    finally:
        await sandbox.stop()
        if started and state_file is not None:
            write_state(sandbox.cluster, state_file)
            print(f"state written to {state_file}", flush=True)


def run_up(
    scenario: str,
    kubeconfig: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    context: str = "sandbox",
    ready_file: Path | None = None,
    rbac: bool | None = None,
    state_file: Path | None = None,
    https_port: int | None = 0,
    tls_dir: Path | None = None,
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
        rbac: Enforce RBAC (True) or not (False); None = as the scenario says.
        state_file: Load the cluster from this file when it exists (instead of building the
            scenario's objects) and write it there on SIGTERM/SIGINT (:mod:`istio_sandbox.state`).
        https_port: Also serve the API over HTTPS here (0 picks a free port; None: no HTTPS).
        tls_dir: Directory keeping the HTTPS certificate; default a temporary one.

    Returns:
        The process exit code: 0 after a clean stop, 2 for an unusable scenario or state file.
    """
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as err:
        print(str(err), file=sys.stderr)
        return 2
    try:
        state = read_state(state_file) if state_file is not None else None
        if state is not None and state.get("version") != STATE_VERSION:
            raise ValueError(f"it has version {state.get('version')!r}, not {STATE_VERSION}")
    except ValueError as err:
        print(f"sandbox state file {state_file} is unusable: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            _serve_until_signalled(
                loaded,
                kubeconfig,
                host,
                port,
                context,
                ready_file,
                rbac,
                state_file,
                state,
                https_port,
                tls_dir,
            )
        )
    except SandboxStartError as err:
        print(f"sandbox did not start: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"sandbox cannot listen on {host}:{port}: {err}", file=sys.stderr)
        return 1
    return 0


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the thread that spawned it
    dies (``prctl(PR_SET_PDEATHSIG)``), so a sandbox never outlives its parent, even one
    killed with SIGKILL. Elsewhere than Linux it does nothing."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            # The parent died between fork and prctl: nobody would send the signal.
            os._exit(1)

    return preexec


class _Spawner:
    """Spawns children from one daemon thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the spawning *thread* exits, not the process: a sandbox
    started from a short-lived thread (``asyncio.to_thread``) would die with that thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], _T]) -> _T:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="sandbox-spawner", daemon=True
                )
                self._thread.start()
        fut: Future[_T] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def _loop(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            try:
                fut.set_result(fn())
            except BaseException as err:  # handed to the caller
                fut.set_exception(err)


_SPAWNER = _Spawner()


class SandboxProcess:
    """A sandbox in a child process; a context manager for tests, the demo and benchmarks.

    The child dies with its parent process (even on SIGKILL). :meth:`restart` stops and
    starts it again on the same port with the same cluster; :meth:`kill` kills it outright.

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
        rbac: bool = False,
    ) -> None:
        """Prepare the child; nothing runs until :meth:`start`.

        Args:
            scenario: Shipped scenario name or path to a scenario file.
            workdir: Directory for the kubeconfig, ready file, state file and log; default a
                new temp dir (removed on stop).
            host: Listen address.
            port: Listen port; 0 picks a free one.
            context: Kubeconfig context name.
            startup_timeout_s: How long to wait for the child to serve.
            rbac: Enforce RBAC from the start (``--rbac``); otherwise as the scenario says.
                Switch it live with :meth:`set_rbac`.
        """
        self.scenario = str(scenario)
        self.host = host
        self.port = port
        self.context = context
        self.startup_timeout_s = startup_timeout_s
        self.rbac = rbac
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.log_path = self.workdir / "sandbox.log"
        self.state_file = self.workdir / "state.json"
        """Where the child writes its cluster when stopped, and reads it on :meth:`restart`."""
        self.tls_dir = self.workdir / "tls"
        """The HTTPS listener's certificate, kept across restarts."""
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
    def https_url(self) -> str:
        """The API over HTTPS, where token kubeconfigs point; "" without ``openssl``."""
        return str(self._ready.get("https_url") or "")

    @property
    def ca_pem(self) -> bytes | None:
        """The HTTPS listener's certificate (PEM), the CA of token kubeconfigs."""
        pem = str(self._ready.get("ca_pem") or "")
        return pem.encode() if pem else None

    @property
    def address(self) -> str:
        """``host:port`` of the server, as a Prometheus scrape target."""
        return self.url.removeprefix("http://")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _command(self, port: int, https_port: int) -> list[str]:
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
            str(port),
            "--context",
            self.context,
            "--ready-file",
            str(self._ready_file),
            "--state-file",
            str(self.state_file),
            "--https-port",
            str(https_port),
            "--tls-dir",
            str(self.tls_dir),
        ]
        if self.rbac:
            cmd.append("--rbac")
        return cmd

    def _spawn(self, port: int, https_port: int = 0) -> None:
        """Start the child and wait until it serves."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        cmd = self._command(port, https_port)
        preexec = _die_with_parent(os.getpid())

        def popen() -> subprocess.Popen[bytes]:
            with self.log_path.open("ab") as log:
                return subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=preexec,
                )

        self._proc = proc = _SPAWNER.run(popen)
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready_file.exists():
            if proc.poll() is not None:
                code = proc.returncode
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

    def start(self) -> SandboxProcess:
        """Spawn the child with a fresh cluster from the scenario and wait until it serves.

        Raises:
            SandboxStartError: It exited or did not serve in time (with its log tail).
        """
        self.state_file.unlink(missing_ok=True)
        self._spawn(self.port)
        return self

    def restart(self, timeout_s: float = 30.0) -> SandboxProcess:
        """Stop the API server (SIGTERM: it writes its state) and start it again on the same
        port with the same objects, resourceVersions, tokens, RBAC switch and faults.

        Watches open across the restart end; resuming one from an older resourceVersion gets
        410 Gone, as after a real API server restart. After :meth:`kill` (or a crash) there
        is no state to keep: the sandbox starts fresh from its scenario, on the same port.

        Raises:
            SandboxStartError: the old process did not write its state, or the new one did
                not serve.
        """
        port = int(self.url.rsplit(":", 1)[1]) if self._ready else self.port
        https_port = int(self.https_url.rsplit(":", 1)[1]) if self.https_url else 0
        running = self._proc is not None and self._proc.poll() is None
        self._terminate(timeout_s)
        if running and not self.state_file.exists():
            raise SandboxStartError(f"sandbox exited without writing its state:\n{self.log_tail()}")
        self._spawn(port, https_port)
        return self

    def kill(self) -> None:
        """SIGKILL the child: no state is written, the workdir stays. :meth:`restart` then
        starts a fresh cluster on the same port."""
        self._close_http()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.state_file.unlink(missing_ok=True)

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _terminate(self, timeout_s: float) -> None:
        self._close_http()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the child (SIGTERM, then SIGKILL). Idempotent."""
        self._terminate(timeout_s)
        self._proc = None
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
        """``POST /sandbox/stats/reset``: clear the counts and the request log."""
        self._client().post("/sandbox/stats/reset").raise_for_status()

    def requests(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """``GET /sandbox/requests``: the request log from ``since`` on (every page), and the
        ``seq`` to pass as ``since`` next time."""
        entries: list[dict[str, Any]] = []
        while True:
            response = self._client().get("/sandbox/requests", params={"since": since})
            response.raise_for_status()
            body = response.json()
            entries.extend(body["requests"])
            if not body["requests"] or int(body["next"]) == since:
                return entries, int(body["next"])
            since = int(body["next"])

    def issue_token(
        self,
        user: str | None = None,
        groups: Sequence[str] = (),
        *,
        service_account: str | tuple[str, str] | None = None,
    ) -> IssuedToken:
        """``POST /sandbox/tokens``: a bearer token for ``user`` (in ``groups``; every user
        is also in ``system:authenticated``) or ``service_account`` (``"namespace/name"``
        or a tuple)."""
        body = _token_request(user, groups, service_account)
        response = self._client().post("/sandbox/tokens", json=body)
        response.raise_for_status()
        return IssuedToken.from_json(response.json())

    def write_kubeconfig_for(self, token: TokenLike, path: Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig for this sandbox whose user authenticates with ``token``,
        against the HTTPS listener (kubectl sends credentials only over TLS)."""
        server = self.https_url or self.url
        doc = kubeconfig_document(server, context, _token_text(token), self.ca_pem)
        _write_atomically(path, yaml.safe_dump(doc))
        return path

    def rbac_enforced(self) -> bool:
        response = self._client().get("/sandbox/rbac")
        response.raise_for_status()
        return bool(response.json()["enforced"])

    def set_rbac(self, enforced: bool) -> None:
        """``PUT /sandbox/rbac``: enforce RBAC, or stop enforcing it, from now on."""
        response = self._client().put("/sandbox/rbac", json={"enforced": enforced})
        response.raise_for_status()

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
