"""The CLI steering a real upgrade: real Temporal dev server, worker, sandbox and Prometheus."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.worker import build_worker

from ..conftest import PrometheusFactory, SandboxFactory
from .upgrade_stack import Cli


@pytest_asyncio.fixture(loop_scope="session")
async def upgrade_env(
    temporal_dev_server: LocalTemporal,
    temporal_local: WorkflowEnvironment,
    sandbox_factory: SandboxFactory,
    prometheus_factory: PrometheusFactory,
    tmp_path: Path,
) -> AsyncIterator[tuple[Cli, Path]]:
    """A sandbox, its Prometheus, a worker on a private task queue, and a spec file."""
    sandbox = await sandbox_factory("demo", context="cli")
    prometheus = await prometheus_factory([sandbox.address])
    queue = f"cli-test-{uuid.uuid4().hex[:8]}"
    spec = {
        "cluster": {
            "name": f"cli-{uuid.uuid4().hex[:6]}",
            "context": "cli",
            "prometheus_url": prometheus.url,
        },
        "target": {"version": "1.31.0"},
        "installer": {"bundle_yaml": revision_bundle("1.31.0", "1-31-0")},
        "approvals": {"before_first_batch": True},
        "gate": {"warmup_seconds": 1, "soak_seconds": 2, "interval_seconds": 1},
    }
    spec_file = tmp_path / "upgrade.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    worker = build_worker(
        temporal_local.client, task_queue=queue, kubeconfig=str(sandbox.kubeconfig)
    )
    async with worker:
        yield Cli(temporal_dev_server.address, queue), spec_file


async def wait_for_status(cli_: Cli, upgrade_id: str, code: int, timeout_s: float = 60) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            result = await cli_("status", upgrade_id, "-o", "json")
            if result.exit_code == code:
                return json.loads(result.stdout)
            await asyncio.sleep(0.5)


async def listed_row(
    run: Cli, upgrade_id: str, ok: Callable[[dict[str, Any]], bool], *args: str
) -> dict[str, Any]:
    """The upgrade's row in ``list -o json`` once ``ok`` holds: search attributes and the
    outcome reach the visibility store asynchronously. Fails after 10 s."""
    row: dict[str, Any] = {}
    for _ in range(40):
        rows = await run.json("list", *args)
        row = next((r for r in rows if r["workflow_id"] == upgrade_id), {})
        if ok(row):
            return row
        await asyncio.sleep(0.25)
    pytest.fail(f"list {' '.join(args)} never showed {upgrade_id} as expected; last: {row}")


async def test_plan_start_approve_abort_watch_list(upgrade_env: tuple[Cli, Path]) -> None:
    run, spec_file = upgrade_env

    plan = await run.json("plan", "-f", str(spec_file))
    assert plan["outcome"] == "DRY_RUN"
    assert plan["plan"]["source_revision"] == "1-30-3"
    assert "checkout" in [ns for b in plan["plan"]["batches"] for ns in b["namespaces"]]

    started = await run.json("start", "-f", str(spec_file))
    upgrade_id = started["workflow_id"]
    assert upgrade_id.startswith("istio-upgrade.cli-") and upgrade_id.endswith(".1-31-0")
    # A second trigger attaches to the running upgrade instead of starting a twin.
    again = await run.json("start", "-f", str(spec_file))
    assert again == started

    waiting = await wait_for_status(run, upgrade_id, ExitCode.WAITING)
    assert waiting["progress"]["phase"] == "WAITING_APPROVAL"
    assert waiting["progress"]["waiting_for"].startswith("approval: migrate batch 0")

    # One upgrade per cluster: another revision is refused, naming the running upgrade.
    other = yaml.safe_load(spec_file.read_text())
    other["target"] = {"version": "1.32.0"}
    other_file = spec_file.with_name("other.yaml")
    other_file.write_text(yaml.safe_dump(other))
    busy = await run("start", "-f", str(other_file))
    assert busy.exit_code == ExitCode.REJECTED, (busy.stdout, busy.stderr)
    assert busy.stdout.strip() == upgrade_id
    assert "already being upgraded by " + upgrade_id in busy.stderr
    busy_json = await run.json("start", "-f", str(other_file), expect=ExitCode.REJECTED)
    assert busy_json["running_workflow_id"] == upgrade_id
    row = await listed_row(run, upgrade_id, lambda r: r.get("phase") == "WAITING_APPROVAL")
    assert row["outcome"] is None, row

    rejected = await run("resume", upgrade_id)
    assert rejected.exit_code == ExitCode.REJECTED
    assert "not paused" in rejected.stderr

    aborted = await run.json("abort", upgrade_id, "-m", "change freeze", "--who", "alice")
    assert aborted["answer"] == "aborting: change freeze"

    ended = await run.json("watch", upgrade_id, expect=ExitCode.ROLLED_BACK)
    assert ended["outcome"] == "ROLLED_BACK"
    assert "change freeze" in ended["message"]
    assert ended["progress"]["phase"] == "ROLLED_BACK"

    status = await run("status", upgrade_id)
    assert status.exit_code == ExitCode.ROLLED_BACK
    assert "ROLLED_BACK" in status.stdout

    late = await run("abort", upgrade_id, "-m", "again")
    assert late.exit_code == ExitCode.REJECTED
    assert "already ended" in late.stderr

    listed = await run.json("list", "--all")
    assert upgrade_id in [row["workflow_id"] for row in listed]
    row = await listed_row(run, upgrade_id, lambda r: bool(r.get("outcome")), "--all")
    assert row["outcome"] == "ROLLED_BACK", row
    running = await run.json("list")
    assert upgrade_id not in [row["workflow_id"] for row in running]


async def test_unknown_upgrade_id_exits_6(upgrade_env: tuple[Cli, Path]) -> None:
    run, _ = upgrade_env
    result = await run("status", "istio-upgrade.nowhere.1-0-0")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith("error: not found")


async def test_status_without_worker_exits_6_naming_the_worker(
    temporal_dev_server: LocalTemporal, temporal_local: WorkflowEnvironment, tmp_path: Path
) -> None:
    idle = Cli(temporal_dev_server.address, f"no-worker-{uuid.uuid4().hex[:8]}")
    spec_file = tmp_path / "idle.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {"cluster": {"name": f"idle-{uuid.uuid4().hex[:6]}"}, "target": {"version": "1.31.0"}}
        )
    )
    start = await idle("start", "-f", str(spec_file), "-o", "json")
    assert start.exit_code == 0, (start.stdout, start.stderr)
    assert "no worker polls task queue" in start.stderr
    started = json.loads(start.stdout)
    try:
        result = await idle("status", started["workflow_id"])
        assert result.exit_code == ExitCode.UNAVAILABLE
        assert "no worker answered" in result.stderr
    finally:
        await temporal_local.client.get_workflow_handle(started["workflow_id"]).terminate("test")
