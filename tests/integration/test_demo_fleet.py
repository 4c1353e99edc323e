"""``istio-upgrade demo --fleet`` end to end: four sandboxes, one bad, the budget stopping
the fleet. Once as a user runs it (a child process, its exit status and output), once in
process with ``--keep-open`` to look at the servers it left up."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from istio_upgrade.cli.demo_fleet import (
    BAD,
    END_REVISIONS,
    EXPECTED,
    FleetDemoState,
    demo_fleet_main,
)
from istio_upgrade.devenv.fleet import pod_revisions
from istio_upgrade.workflows.fleet import FleetRollout
from tests.integration.test_demo import DEMO_TIMEOUT_S, ISTIO_UPGRADE, demo_env

pytestmark = pytest.mark.slow


async def test_demo_fleet_exits_0_when_the_budget_stops_the_fleet(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ISTIO_UPGRADE,
        "demo",
        "--fleet",
        "--run-dir",
        str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=demo_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), DEMO_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    assert "demo passed" in text
    assert "Traceback" not in text, text[-4000:]
    assert "FailureBudgetExceeded" in text
    summary = text[text.rindex("istio-upgrade demo --fleet") :]
    for cluster, state in EXPECTED.items():
        assert re.search(rf"{cluster}\s.*{state} ✓", summary), summary
    # The Web UI links of the fleet and of each child that ran.
    assert re.search(r"fleet: http://127\.0\.0\.1:\d+/.*/istio-fleet\.demo-fleet\.1-31-0", text)
    for cluster in ("canary", "east", "west"):
        assert f"child istio-upgrade.{cluster}.1-31-0: http://" in text, text[-4000:]


async def test_demo_fleet_leaves_the_fleet_stopped_and_the_last_stage_untouched(
    tmp_path: Path,
) -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    state = FleetDemoState()
    demo = asyncio.create_task(
        demo_fleet_main(console, state, keep_open=True, run_dir=tmp_path / "run", ui_port=None)
    )
    ended = asyncio.create_task(state.ended.wait())
    try:
        await asyncio.wait({demo, ended}, timeout=DEMO_TIMEOUT_S, return_when="FIRST_COMPLETED")
        output = console.file.getvalue()  # type: ignore[attr-defined]
        assert ended.done(), f"demo ended early or timed out: {demo}\n{output[-4000:]}"
        assert state.ok, f"{state.problems}\n{output[-4000:]}"
        stack = state.stack
        assert stack is not None and stack.temporal is not None
        # What Temporal says, asked anew.
        handle = stack.client.get_workflow_handle(state.fleet_id)
        description = await handle.describe()
        assert description.status is not None and description.status.name == "FAILED"
        progress = await handle.query(FleetRollout.progress)
        assert progress.budget_exceeded
        assert {c.cluster: c.state for c in progress.clusters} == EXPECTED
        for line in progress.clusters:
            if line.state != "SKIPPED":
                child = await stack.client.get_workflow_handle(line.upgrade_id).describe()
                assert child.parent_id == state.fleet_id, line
        # What the clusters say: the bad one is back on the old revision, the last stage
        # never moved.
        for name, revisions in END_REVISIONS.items():
            assert await pod_revisions(stack.clusters[name]) == revisions, name
        urls = [
            stack.temporal.workflow_url(state.fleet_id),
            stack.clusters[BAD].api_url + "/healthz",
        ]
        async with httpx.AsyncClient(timeout=5) as http:
            for url in urls:
                assert url is not None
                (await http.get(url)).raise_for_status()
    finally:
        ended.cancel()
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo
    async with httpx.AsyncClient(timeout=2) as http:
        for url in urls:
            assert url is not None
            with pytest.raises(httpx.ConnectError):
                await http.get(url)
