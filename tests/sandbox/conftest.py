"""Fixtures: the sandbox API served in-process on an ephemeral port, or a real cluster.

``pytest -m realcluster`` with ``KUBECONFIG`` set runs the API-behaviour suite against that
cluster instead; tests then create and delete their own namespace and skip sandbox-only
checks (accounting, faults).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from istio_sandbox.api import build_app
from istio_sandbox.cluster import Cluster, Timings
from istio_sandbox.tls import Certificate, TLSUnavailable, ensure_certificate

T = TypeVar("T")


def write_kubeconfig(path: Path, server: str, context: str = "sandbox") -> Path:
    """A one-cluster, one-user, no-auth kubeconfig pointing at ``server``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def write_token_kubeconfig(
    path: Path, server: str, token: str, ca_pem: bytes | None = None, context: str = "sandbox"
) -> Path:
    """A kubeconfig whose user authenticates with a bearer token (over HTTPS for kubectl)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class ServedSandbox:
    """``build_app(cluster)`` (plus controllers when available) on a background event loop,
    over HTTP and, when ``openssl`` can make a certificate, HTTPS (for token kubeconfigs)."""

    def __init__(self, cluster: Cluster, *, with_controllers: bool = True) -> None:
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._controllers: Any = None
        self._with_controllers = with_controllers
        self.port = 0
        self.https_port = 0
        self.certificate: Certificate | None = None
        self._tls_dir = Path(tempfile.mkdtemp(prefix="sandbox-tls-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}" if self.https_port else ""

    @property
    def ca_pem(self) -> bytes | None:
        return self.certificate.pem() if self.certificate is not None else None

    def write_kubeconfig_for(self, token: str, path: Path) -> Path:
        """A kubeconfig for ``token``: HTTPS when served (kubectl sends no token over HTTP)."""
        return write_token_kubeconfig(path, self.https_url or self.url, token, self.ca_pem)

    def start(self) -> ServedSandbox:
        self._thread.start()
        self.port = self.call_async(self._start())
        return self

    async def _start(self) -> int:
        self._runner = web.AppRunner(build_app(self.cluster), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        with contextlib.suppress(TLSUnavailable):
            self.certificate = ensure_certificate(self._tls_dir)
            tls = web.TCPSite(
                self._runner, "127.0.0.1", 0, ssl_context=self.certificate.server_context()
            )
            await tls.start()
            self.https_port = int(self._runner.addresses[-1][1])
        if self._with_controllers:
            self._controllers = _controllers(self.cluster)
            if self._controllers is not None:
                await self._controllers.start()
        return int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._controllers is not None:
            await self._controllers.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (the store is single-threaded) and return its result."""

        async def run() -> T:
            return fn()

        result: T = self.call_async(run())
        return result

    def call_async(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call_async(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()
        shutil.rmtree(self._tls_dir, ignore_errors=True)


def _controllers(cluster: Cluster) -> Any:
    """``Controllers(cluster)`` when that package is present; the API is testable without it."""
    try:
        module = importlib.import_module("istio_sandbox.controllers")
    except ImportError:
        return None
    factory = getattr(module, "Controllers", None)
    return factory(cluster) if factory is not None else None


@dataclass
class KubeTarget:
    """What the API tests talk to: the sandbox, or a real cluster under ``-m realcluster``."""

    kubeconfig: Path
    sandbox: ServedSandbox | None

    @property
    def is_sandbox(self) -> bool:
        return self.sandbox is not None

    def api_client(self) -> k8s.ApiClient:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api


def _realcluster_requested(config: pytest.Config) -> bool:
    markexpr = config.getoption("-m") or ""
    return "realcluster" in markexpr and "not realcluster" not in markexpr


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSandbox]:
    """A sandbox API server with fast timings, shared by the session."""
    cluster = Cluster(timings=Timings(pod_start_s=0.1, pod_ready_s=0.1, istiod_ready_s=0.2))
    served = ServedSandbox(cluster).start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KubeTarget:
    """The cluster under test, with a kubeconfig file for kubectl and the Python client."""
    if _realcluster_requested(request.config):
        env = os.environ.get("KUBECONFIG")
        if not env:
            pytest.skip("-m realcluster needs KUBECONFIG pointing at a disposable cluster")
        return KubeTarget(Path(env.split(os.pathsep)[0]), None)
    served = request.getfixturevalue("sandbox_server")
    path = write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", served.url)
    return KubeTarget(path, served)


@pytest.fixture
def sandbox(kube: KubeTarget) -> ServedSandbox:
    """The served sandbox; skips sandbox-only tests on a real cluster."""
    if kube.sandbox is None:
        pytest.skip("sandbox-only behaviour")
    return kube.sandbox


@pytest.fixture
def api(kube: KubeTarget) -> Iterator[k8s.ApiClient]:
    client = kube.api_client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespace(name)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``-m realcluster``, select the modules that set ``RUNS_ON_REAL_CLUSTER = True``.

    Marking them only then keeps them in the default run (``-m 'not realcluster'``) against
    the sandbox.
    """
    if not _realcluster_requested(config):
        return
    for item in items:
        module = getattr(item, "module", None)
        if getattr(module, "RUNS_ON_REAL_CLUSTER", False):
            item.add_marker(pytest.mark.realcluster)
