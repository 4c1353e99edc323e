"""``istio-upgrade demo --fleet``: a fleet rollout over four sandbox clusters, one bad.

Four sandbox clusters (a Prometheus each), the Temporal dev server with its Web UI and a
worker in this process. The fleet has three stages — ``canary``, ``wave-1`` (two clusters
side by side, one of them burning on the new revision) and ``wave-2`` — and a failure
budget of 0: the bad cluster's gate fails, its upgrade rolls back, and the budget stops the
fleet before ``wave-2`` starts. The Web UI shows the fleet workflow with its children.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from istio_upgrade.client import start_fleet
from istio_upgrade.devenv.binaries import MissingBinaryError
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.devenv.fleet import (
    add_fleet_clusters,
    cluster_writes,
    pod_revisions,
    request_mark,
)
from istio_upgrade.devenv.prometheus import PrometheusStartError
from istio_upgrade.devenv.signals import sigterm_cancels
from istio_upgrade.devenv.stack import DevStack, LocalCluster
from istio_upgrade.devenv.temporal import TemporalStartError
from istio_upgrade.models.fleet import FleetProgress, FleetSpec, fleet_workflow_id
from istio_upgrade.workflows.fleet import FleetRollout

SOURCE_REVISION = "1-30-3"
TARGET_VERSION = "1.31.0"
TARGET_REVISION = "1-31-0"
FLEET_NAME = "demo-fleet"

STAGES: list[tuple[str, list[str]]] = [
    ("canary", ["canary"]),
    ("wave-1", ["east", "west"]),
    ("wave-2", ["north"]),
]
BAD = "west"
"""The cluster whose new revision burns: pods it injects in ``checkout`` answer 30% 503."""

EXPECTED = {"canary": "SUCCEEDED", "east": "SUCCEEDED", "west": "ROLLED_BACK", "north": "SKIPPED"}
"""How each cluster must end: the budget (0 failures) stops the fleet before ``wave-2``."""

END_REVISIONS = {
    "canary": {TARGET_REVISION},
    "east": {TARGET_REVISION},
    "west": {SOURCE_REVISION},
    "north": {SOURCE_REVISION},
}

GATE: dict[str, Any] = {
    "slos": [{"name": "availability", "objective": 0.99}],
    "warmup_seconds": 1,
    "soak_seconds": 4,
    "interval_seconds": 2,
    "max_soak_seconds": 12,
    "short_window_seconds": 4,
    # Unattended demo: an INCONCLUSIVE batch moves on instead of waiting for a person.
    "on_inconclusive": "proceed",
}


def fleet_spec(clusters: list[LocalCluster]) -> FleetSpec:
    """The demo fleet: three stages, failure budget 0, second-long gate windows."""
    return FleetSpec.model_validate(
        {
            "name": FLEET_NAME,
            "clusters": [
                {"name": c.name, "context": c.name, "prometheus_url": c.prometheus_url}
                for c in clusters
            ],
            "stages": [
                {"name": name, "clusters": members, "max_parallel": len(members)}
                for name, members in STAGES
            ],
            "template": {
                "installer": {"bundle_yaml": revision_bundle(TARGET_VERSION, TARGET_REVISION)},
                "target": {"version": TARGET_VERSION},
                "migration": {
                    "canary": ["frontend"],
                    "growth_factor": 20,
                    "max_batch_size": 20,
                    "rollout_timeout_seconds": 30,
                },
                "gate": dict(GATE),
                "cleanup": {"grace_seconds": 1},
            },
            "failure_budget": {"count": 0},
        }
    )


@dataclass
class FleetDemoState:
    """What the demo has established so far; survives a Ctrl-C during ``--keep-open``."""

    finished: bool = False
    """The fleet ended."""
    ok: bool = False
    """…as expected: stopped by the budget, bad cluster rolled back, ``wave-2`` untouched."""
    problems: list[str] = field(default_factory=list)
    progress: FleetProgress | None = None
    failure_type: str | None = None
    """The type of the error the fleet failed with; ``FailureBudgetExceeded`` expected."""
    fleet_id: str = ""
    stack: DevStack | None = None
    """The running servers, for a caller that looks at them (``--keep-open``)."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``finished`` and ``ok`` hold the verdict."""


def progress_table(progress: FleetProgress, urls: dict[str, str | None]) -> Table:
    table = Table(title=f"istio-upgrade demo --fleet: {progress.fleet}")
    table.add_column("cluster", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("Web UI", no_wrap=True)
    for line in progress.clusters:
        expected = EXPECTED.get(line.cluster)
        good = line.state == expected
        mark = "✓" if good else f"✗ expected {expected}"
        table.add_row(
            line.cluster,
            line.stage,
            Text(f"{line.state} {mark}", style="green" if good else "red"),
            urls.get(line.upgrade_id or "") or "-",
        )
    return table


async def follow_fleet(handle: Any, console: Console) -> FleetProgress:
    """Print each change of the fleet's phase, stage or a cluster's state until it ends."""
    seen: dict[str, str] = {}
    last_head = ""
    result: asyncio.Task[Any] = asyncio.ensure_future(handle.result())
    try:
        while True:
            progress: FleetProgress = await handle.query(FleetRollout.progress)
            head = f"{progress.phase} stage {progress.stage or '-'}"
            if head != last_head:
                console.print(
                    f"fleet: {progress.phase}, stage {progress.stage or '-'}, failures "
                    f"{progress.failures}/{progress.budget_allowed} allowed"
                    + (" (budget exceeded)" if progress.budget_exceeded else ""),
                    soft_wrap=True,
                )
                last_head = head
            for line in progress.clusters:
                if seen.get(line.cluster) != line.state:
                    seen[line.cluster] = line.state
                    note = f"  {line.note}" if line.note else ""
                    console.print(
                        f"  {line.cluster:<7} [{line.stage}] {line.state}{note}", soft_wrap=True
                    )
            if result.done():
                return progress
            await asyncio.wait({result}, timeout=1.0)
    finally:
        if not result.done():
            result.cancel()
        elif not result.cancelled():
            result.exception()  # retrieved here; the caller awaits the result itself


async def verify(
    state: FleetDemoState,
    clusters: dict[str, LocalCluster],
    marks: dict[str, int],
) -> None:
    """Check the end against the story: record every mismatch in ``state.problems``."""
    progress = state.progress
    if state.failure_type != "FailureBudgetExceeded":
        state.problems.append(f"fleet ended with {state.failure_type!r}, not the budget stop")
    if progress is None:
        state.problems.append("no progress")
        return
    if not progress.budget_exceeded:
        state.problems.append("budget not exceeded")
    got = {line.cluster: line.state for line in progress.clusters}
    if got != EXPECTED:
        state.problems.append(f"cluster states {got}, expected {EXPECTED}")
    for name, expected in END_REVISIONS.items():
        revisions = await pod_revisions(clusters[name])
        if revisions != expected:
            state.problems.append(f"{name}: pods on {revisions}, expected {expected}")
    untouched = [name for name, stage in _stage_of().items() if stage == STAGES[-1][0]]
    for name in untouched:
        writes = await asyncio.to_thread(cluster_writes, clusters[name], marks[name])
        if writes:
            state.problems.append(f"{name}: {len(writes)} writes, expected none")


def _stage_of() -> dict[str, str]:
    return {member: stage for stage, members in STAGES for member in members}


async def demo_fleet_main(
    console: Console,
    state: FleetDemoState,
    *,
    keep_open: bool,
    run_dir: Path,
    ui_port: int | None,
) -> None:
    """Start everything, run the fleet, check how it ended, record the verdict in ``state``."""
    names = [member for _, members in STAGES for member in members]
    async with DevStack(run_dir, ui=True, ui_port=ui_port) as stack:
        state.stack = stack
        with console.status("starting Temporal dev server, 4 sandboxes and their Prometheus …"):
            temporal = await stack.start_temporal()
            clusters = await add_fleet_clusters(stack, names, {BAD}, TARGET_REVISION)
            await stack.start_worker()
        by_name = {c.name: c for c in clusters}
        console.print(f"Temporal Web UI: [bold]{temporal.ui_url}[/]", soft_wrap=True)
        for cluster in clusters:
            bad = "  (new revision burns)" if cluster.name == BAD else ""
            console.print(
                f"cluster {cluster.name}: API {cluster.api_url}  "
                f"Prometheus {cluster.prometheus_url}{bad}",
                soft_wrap=True,
            )
        console.print(
            f"kubeconfig: {stack.kubeconfig}  (kubectl --context {BAD} get ns)", soft_wrap=True
        )
        spec = fleet_spec(clusters)
        fleet_id = state.fleet_id = fleet_workflow_id(spec)
        marks = {n: await asyncio.to_thread(request_mark, c) for n, c in by_name.items()}
        console.rule(
            f"[bold]fleet {FLEET_NAME}[/]: {len(names)} clusters → Istio {TARGET_VERSION}, "
            "stages " + ", ".join(f"{s} {m}" for s, m in STAGES) + ", failure budget 0"
        )
        console.print(f"fleet in the Web UI: {temporal.workflow_url(fleet_id)}", soft_wrap=True)
        handle = await start_fleet(stack.client, spec, kubeconfig=str(stack.kubeconfig))
        state.progress = await follow_fleet(handle, console)
        try:
            result = await handle.result()
            state.failure_type = None
            console.print(Text(f"fleet ended: {result.summary}", style="red"), soft_wrap=True)
        except WorkflowFailureError as failure:
            cause = failure.cause
            state.failure_type = cause.type if isinstance(cause, ApplicationError) else "?"
            console.print(f"fleet stopped: {cause}", soft_wrap=True)
        state.progress = await handle.query(FleetRollout.progress)
        await verify(state, by_name, marks)
        urls = {
            line.upgrade_id: temporal.workflow_url(line.upgrade_id)
            for line in state.progress.clusters
            if line.upgrade_id and line.state != "SKIPPED"
        }
        console.print(progress_table(state.progress, urls))
        console.print(f"fleet: {temporal.workflow_url(fleet_id)}", soft_wrap=True)
        for upgrade_id, url in urls.items():
            console.print(f"  child {upgrade_id}: {url}", soft_wrap=True)
        state.finished = True
        state.ok = not state.problems
        state.ended.set()
        for problem in state.problems:
            console.print(Text(f"✗ {problem}", style="red"), soft_wrap=True)
        console.print(
            Text(
                "demo passed: the budget stopped the fleet, "
                f"{BAD} rolled back, {STAGES[-1][0]} untouched"
                if state.ok
                else "demo FAILED: the fleet did not end as expected",
                style="bold green" if state.ok else "bold red",
            )
        )
        if keep_open:
            console.print("servers stay up for browsing; Ctrl-C to stop")
            await asyncio.Event().wait()


def run_demo_fleet(
    *, keep_open: bool = False, run_dir: Path | None = None, ui_port: int | None = None
) -> int:
    """Run the fleet demo and return the process exit code.

    0 when the fleet ended as expected, 1 when not, 130 when interrupted before it ended.
    Ctrl-C or SIGTERM stops every server.
    """
    console = Console()
    own_dir = run_dir is None
    directory = run_dir or Path(tempfile.mkdtemp(prefix="istio-upgrade-demo-fleet-"))
    directory.mkdir(parents=True, exist_ok=True)
    state = FleetDemoState()

    async def main() -> None:
        with sigterm_cancels():
            await demo_fleet_main(
                console, state, keep_open=keep_open, run_dir=directory, ui_port=ui_port
            )

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("stopped; every server was shut down")
    except (MissingBinaryError, PrometheusStartError, TemporalStartError) as error:
        console.print(Text("error: ", style="red") + Text(str(error)), soft_wrap=True)
        console.print(f"logs and files kept in {directory}", soft_wrap=True)
        return 1
    if own_dir and state.ok:
        shutil.rmtree(directory, ignore_errors=True)
    elif not state.ok:
        console.print(f"logs and files kept in {directory}", soft_wrap=True)
    if state.finished:
        return 0 if state.ok else 1
    return 130
