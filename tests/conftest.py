"""Session fixtures: the real servers the integration tests run against.

Every server is the same one the demo runs (see ``istio_upgrade.devenv``). Locally a missing
binary skips the tests that need it, with the install command as the reason; in CI
(``CI=true``) it fails them instead, so a broken CI image cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import (
    LocalTemporal,
    MissingBinaryError,
    PrometheusServer,
    ScrapeTarget,
    start_dev_server,
    start_time_skipping,
)

PrometheusFactory = Callable[..., Awaitable[PrometheusServer]]
SandboxFactory = Callable[..., Awaitable[Any]]


class _Stoppable(Protocol):
    def stop_sync(self) -> None: ...


class _SandboxStopper:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def stop_sync(self) -> None:
        self.sandbox.stop()


_STARTED: list[_Stoppable] = []
"""Servers started by the factories, oldest first.

Each one idles at a few percent of a core (traffic model, 1 s scrapes); on a 2-core CI box a
session's worth of them slows every later test. So servers a test starts (in its body or its
function-scoped fixtures) stop when that test ends; servers started by module- or
session-scoped fixtures — set up before the per-test mark is taken — live until session end.
"""


@pytest.fixture(autouse=True)
def _stop_servers_started_by_the_test() -> Iterator[None]:
    mark = len(_STARTED)
    yield
    while len(_STARTED) > mark:
        _STARTED.pop().stop_sync()


def in_ci() -> bool:
    """Whether the run is in CI, where nothing may be skipped for a missing binary."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(error: MissingBinaryError) -> None:
    """Skip (locally) or fail (in CI) the requesting test because a server binary is absent."""
    if in_ci():
        pytest.fail(f"CI must provide every server binary: {error}", pytrace=False)
    pytest.skip(str(error))


def _stop_all() -> None:
    while _STARTED:
        _STARTED.pop().stop_sync()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_dev_server() -> AsyncIterator[LocalTemporal]:
    """The Temporal dev server (``temporal server start-dev``), shared by the session."""
    try:
        server = await start_dev_server(ui=False)
    except MissingBinaryError as error:
        missing(error)
        raise
    try:
        yield server
    finally:
        await server.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_local(temporal_dev_server: LocalTemporal) -> WorkflowEnvironment:
    """The dev server's environment; ``temporal_local.client`` uses the pydantic converter."""
    return temporal_dev_server.env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_ts() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for long soaks and approvals in seconds."""
    try:
        env = await start_time_skipping()
    except MissingBinaryError as error:
        missing(error)
        raise
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def prometheus_factory() -> AsyncIterator[PrometheusFactory]:
    """Start a real Prometheus scraping the given targets every second.

    Call as ``await prometheus_factory(["127.0.0.1:8080"])`` or with
    :class:`~istio_upgrade.devenv.ScrapeTarget` objects; keyword arguments go to
    :class:`~istio_upgrade.devenv.PrometheusServer`. A server started by a test stops when the
    test ends; one started by a module/session fixture stops at session end.
    """

    async def factory(
        targets: Sequence[str | ScrapeTarget] = (), **kwargs: Any
    ) -> PrometheusServer:
        resolved = [t if isinstance(t, ScrapeTarget) else ScrapeTarget(address=t) for t in targets]
        server = PrometheusServer(resolved, **kwargs)
        try:
            await server.start()
        except MissingBinaryError as error:
            missing(error)
            raise
        _STARTED.append(server)
        return server

    try:
        yield factory
    finally:
        await asyncio.to_thread(_stop_all)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandbox_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SandboxFactory]:
    """Start a sandbox cluster in a child process from a scenario name or YAML path.

    Call as ``sandbox = await sandbox_factory("demo")``; keyword arguments go to
    :class:`~istio_sandbox.server.SandboxProcess` (``context``, ``port`` …). The
    kubeconfig is ``sandbox.kubeconfig``. A sandbox started by a test stops when the test
    ends; one started by a module/session fixture stops at session end.
    """
    from istio_sandbox.server import SandboxProcess

    async def factory(scenario: str | Path, **kwargs: Any) -> SandboxProcess:
        kwargs.setdefault("workdir", tmp_path_factory.mktemp("sandbox"))
        sandbox = SandboxProcess(scenario, **kwargs)
        # start() blocks until the child serves; keep the session loop free meanwhile.
        await asyncio.to_thread(sandbox.start)
        _STARTED.append(_SandboxStopper(sandbox))
        return sandbox

    try:
        yield factory
    finally:
        await asyncio.to_thread(_stop_all)
