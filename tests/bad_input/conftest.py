"""One sandbox cluster and one worker shared by every bad-input case that reaches a cluster.

A bad input must be refused before anything in the cluster changes, so each case resets the
sandbox's request counters, submits its input and then reads ``/sandbox/stats``: ``writes``
must still be 0. The cluster itself is never changed by a passing case, so all of them can
share it (and the Temporal dev server of the session).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from temporalio.client import Client

from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.worker import build_worker
from tests.bad_input.corpus import Case


@dataclass
class SharedCluster:
    """The sandbox, the Temporal server and the task queue of a worker reaching the sandbox."""

    client: Client
    address: str
    task_queue: str
    sandbox: Any

    def reset(self) -> None:
        self.sandbox.reset_stats()

    def writes(self) -> int:
        stats: dict[str, Any] = self.sandbox.stats()
        return int(stats["writes"])


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def shared_cluster(
    temporal_dev_server: LocalTemporal, sandbox_factory: Any
) -> AsyncIterator[SharedCluster]:
    """The ``demo`` sandbox and a worker for it, for the whole ``tests/bad_input`` package."""
    sandbox = await sandbox_factory("demo")
    client = temporal_dev_server.env.client
    task_queue = f"bad-input-{uuid.uuid4().hex[:8]}"
    worker = build_worker(client, task_queue=task_queue, kubeconfig=str(sandbox.kubeconfig))
    try:
        async with worker:
            yield SharedCluster(client, temporal_dev_server.address, task_queue, sandbox)
    finally:
        # Stopped here, not at session end: an idle sandbox costs CPU the later tests need.
        await asyncio.to_thread(sandbox.stop)


def named(message: str, path: str) -> bool:
    """Whether ``message`` names ``path`` as a whole path, not as part of a longer one."""
    return re.search(rf"(?<![\w.\[\]-]){re.escape(path)}(?![\w.\[-])", message) is not None


def assert_explains(message: str, case: Case, *, fix: bool = True) -> None:
    """The refusal names every field of ``case``, its fix, and never echoes its secret."""
    for path in case.fields:
        assert named(message, path), f"{case.id}: {path!r} not named in:\n{message}"
    if fix:
        for words in case.fix:
            assert words in message, f"{case.id}: fix {words!r} not said in:\n{message}"
    if case.secret is not None:
        assert case.secret not in message, f"{case.id}: the secret is echoed:\n{message}"
