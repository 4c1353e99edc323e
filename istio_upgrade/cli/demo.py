"""``istio-upgrade demo``: two real upgrades against sandboxes, one succeeds, one rolls back.

Everything runs for real on this machine: two sandbox clusters, a Prometheus for each, the
Temporal dev server with its Web UI, and a worker in this process. Windows are seconds
instead of minutes so the whole demo takes a few minutes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowFailureError

from istio_upgrade.activities.prometheus import wait_revision_disconnected
from istio_upgrade.cli.outcome import Ending
from istio_upgrade.cli.render import gate_summary, latest_gate
from istio_upgrade.cli.watching import follow_live
from istio_upgrade.client import start_removal, start_upgrade, workflow_id
from istio_upgrade.devenv.binaries import MissingBinaryError
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.devenv.prometheus import PrometheusStartError
from istio_upgrade.devenv.signals import sigterm_cancels
from istio_upgrade.devenv.stack import DevStack, LocalCluster
from istio_upgrade.devenv.temporal import TemporalStartError
from istio_upgrade.models import ClusterRef, GateSpec, Progress, SLOSpec, UpgradeSpec
from istio_upgrade.models.removal import RemovalResult, RemoveRevisionSpec

SOURCE_VERSION = "1.30.3"
SOURCE_REVISION = "1-30-3"
TARGET_VERSION = "1.31.0"
TARGET_REVISION = "1-31-0"
BARE_POD = ("batch", "debug-shell")
"""The demo scenario's pod without owner: no upgrade can restart it, so it keeps the old
revision installed until someone deletes it."""


@dataclass
class Run:
    """One demo upgrade and how it ended."""

    cluster: str
    expected: str
    """What the run must end with to count as a success of the demo."""
    ending: Ending | None = None
    progress: Progress | None = None
    seconds: float = 0.0
    url: str | None = None
    removal: RemovalResult | None = None
    """The follow-up removal of the old revision the upgrade kept, if one ran."""

    @property
    def removed_afterwards(self) -> bool:
        """Whether the follow-up removal uninstalled the old revision."""
        return self.removal is not None and self.removal.outcome == "REMOVED"

    @property
    def as_expected(self) -> bool:
        if self.ending is None:
            return False
        if self.expected == "SUCCEEDED" and self.ending.result is not None:
            # The old revision is gone: removed by the upgrade, or after the bare pod went.
            removed = self.ending.result.old_revision_removed or self.removed_afterwards
            return self.ending.outcome == "SUCCEEDED" and removed
        if self.expected == "ROLLED_BACK":
            failed = self.ending.result.failed_gate if self.ending.result else None
            # Rolled back *by the gate*: an abort or a crash would not show the feature.
            return (
                self.ending.outcome == "ROLLED_BACK"
                and failed is not None
                and (failed.verdict == "FAIL")
            )
        return self.ending.outcome == self.expected


def cluster_ref(cluster: LocalCluster) -> ClusterRef:
    """How specs name a local cluster: its kubeconfig context is its name."""
    return ClusterRef(
        name=cluster.name, context=cluster.name, prometheus_url=cluster.prometheus_url
    )


def demo_spec(cluster: LocalCluster, bundle: Path) -> UpgradeSpec:
    """The upgrade both clusters get: the same spec a real cluster would, with short windows."""
    return UpgradeSpec.model_validate(
        {
            "cluster": cluster_ref(cluster),
            "target": {"version": TARGET_VERSION},
            "installer": {"bundle_path": str(bundle)},
            "migration": {"first_batch_size": 1, "growth_factor": 2, "max_batch_size": 6},
            "gate": GateSpec(
                # Seconds-long windows see few requests, and the rule of three needs
                # 3 / (burn threshold x error budget) of them before a namespace may PASS:
                # 99% at 2.5x needs 120 (99.9% at 14.4x would need 209).
                slos=[SLOSpec(name="availability", objective=0.99, burn_rate_threshold=2.5)],
                warmup_seconds=2.5,
                soak_seconds=8,
                interval_seconds=2,
                max_soak_seconds=16,
                short_window_seconds=8,
                # Unattended demo: an INCONCLUSIVE batch moves on instead of waiting for a person.
                on_inconclusive="proceed",
            ).model_dump(),
            "cleanup": {"grace_seconds": 2},
        }
    )


def write_bundle(run_dir: Path) -> Path:
    """The rendered control plane of the target revision, as ``helm template`` would give it."""
    path = run_dir / f"istiod-{TARGET_REVISION}.yaml"
    path.write_text(revision_bundle(TARGET_VERSION, TARGET_REVISION))
    return path


async def run_upgrade(
    stack: DevStack, cluster: LocalCluster, bundle: Path, run: Run, console: Console
) -> None:
    """Start the upgrade of ``cluster`` and follow it live until it ends."""
    spec = demo_spec(cluster, bundle)
    upgrade_id = workflow_id(spec)
    run.url = stack.temporal.workflow_url(upgrade_id) if stack.temporal else None
    console.rule(f"[bold]{cluster.name}[/]: Istio {SOURCE_VERSION} → {TARGET_VERSION}")
    if run.url:
        console.print(f"Web UI: {run.url}", soft_wrap=True)
    started = time.monotonic()
    await start_upgrade(stack.client, spec)
    run.ending, run.progress = await follow_live(stack.client, upgrade_id, console=console)
    run.seconds = time.monotonic() - started
    style = "green" if run.as_expected else "red"
    console.line()
    console.print(Text(f"{run.ending.outcome}: {run.ending.message}", style=style))


async def remove_kept_revision(
    stack: DevStack, cluster: LocalCluster, run: Run, console: Console
) -> None:
    """Do what an operator would after a successful upgrade kept the old revision.

    The bare pod blocks the removal (the upgrade cannot restart it); its owner deletes it,
    then ``remove-revision`` checks again that nothing uses the revision and uninstalls it.
    """
    ending = run.ending
    if ending is None or ending.result is None or ending.outcome != "SUCCEEDED":
        return
    if ending.result.old_revision_removed:
        return
    namespace, pod = BARE_POD
    console.print(
        f"As the owner of the bare pod {namespace}/{pod}: delete it, then "
        f"`istio-upgrade remove-revision --cluster {cluster.name} --revision {SOURCE_REVISION}`",
        soft_wrap=True,
    )
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as http:
        await http.delete(f"/api/v1/namespaces/{namespace}/pods/{pod}")
    # The removal asks Prometheus whether proxies are still connected to the old istiod;
    # give it the scrape that sees the pod gone.
    await wait_revision_disconnected(cluster.prometheus_url, SOURCE_REVISION, timeout_s=20)
    spec = RemoveRevisionSpec(cluster=cluster_ref(cluster), revision=SOURCE_REVISION)
    handle = await start_removal(stack.client, spec)
    try:
        run.removal = await handle.result()
    except WorkflowFailureError as failure:
        console.print(Text(f"removal refused: {failure.cause}", style="red"), soft_wrap=True)
        return
    console.print(Text(run.removal.summary, style="green"), soft_wrap=True)


def old_revision_summary(run: Run) -> str:
    """What became of the old revision: removed, restored (rollback) or still installed."""
    result = run.ending.result if run.ending else None
    if result is None:
        return "-"
    if result.old_revision_removed:
        return "removed by the upgrade"
    if run.removed_afterwards:
        return "removed after the bare pod went"
    return "in use (rolled back)" if result.outcome == "ROLLED_BACK" else "kept"


def batches_summary(run: Run) -> str:
    """``5/5 done (2 inconclusive)`` or ``2/5 done, failed at batch 2``."""
    batches = run.progress.batches if run.progress else []
    verdicts = [b.gate_results[-1].verdict for b in batches if b.gate_results]
    done = sum(1 for v in verdicts if v != "FAIL")
    text = f"{done}/{len(batches)} done"
    inconclusive = verdicts.count("INCONCLUSIVE")
    if inconclusive:
        text += f" ({inconclusive} inconclusive)"
    result = run.ending.result if run.ending else None
    if result is not None and result.failed_batch is not None:
        text += f", failed at batch {result.failed_batch}"
    return text


def decisive_gate(run: Run) -> Text:
    """The gate that rolled the upgrade back, else the last evaluation."""
    result = run.ending.result if run.ending else None
    if result is not None and result.failed_gate is not None:
        return gate_summary(result.failed_gate)
    return gate_summary(latest_gate(run.progress) if run.progress else None)


def summary_table(runs: list[Run]) -> Table:
    """Outcome, batches, the decisive gate numbers and duration of each run."""
    table = Table(title="istio-upgrade demo")
    table.add_column("cluster", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("batches")
    table.add_column("gate")
    table.add_column(f"revision {SOURCE_REVISION}")
    table.add_column("time", justify="right", no_wrap=True)
    for run in runs:
        outcome = run.ending.outcome if run.ending else "not run"
        mark = "✓" if run.as_expected else f"✗ expected {run.expected}"
        table.add_row(
            run.cluster,
            Text(f"{outcome} {mark}", style="green" if run.as_expected else "red"),
            batches_summary(run),
            decisive_gate(run),
            old_revision_summary(run),
            f"{run.seconds:.0f}s",
        )
    return table


@dataclass
class DemoState:
    """What the demo has established so far; survives a Ctrl-C during ``--keep-open``."""

    finished: bool = False
    """Both upgrades ran to their end."""
    ok: bool = False
    """…and each ended as expected."""


async def demo_main(
    console: Console, state: DemoState, *, keep_open: bool, run_dir: Path, ui_port: int | None
) -> None:
    """Start everything, run both upgrades, print the summary, record the verdict in ``state``."""
    runs = [
        Run(cluster="demo", expected="SUCCEEDED"),
        Run(cluster="bad-canary", expected="ROLLED_BACK"),
    ]
    async with DevStack(run_dir, ui=True, ui_port=ui_port) as stack:
        with console.status("starting Temporal dev server, sandboxes and Prometheus …"):
            temporal = await stack.start_temporal()
            # Both clusters start now so Prometheus holds pre-migration traffic for the
            # liveness check by the time each upgrade begins.
            clusters = [await stack.add_cluster(run.cluster, run.cluster) for run in runs]
            await stack.start_worker()
        bundle = write_bundle(run_dir)
        # soft_wrap: links and paths stay on one line, clickable and copyable.
        console.print(f"Temporal Web UI: [bold]{temporal.ui_url}[/]", soft_wrap=True)
        for cluster in clusters:
            console.print(
                f"cluster {cluster.name}: API {cluster.api_url}  "
                f"Prometheus {cluster.prometheus_url}",
                soft_wrap=True,
            )
        console.print(
            f"kubeconfig: {stack.kubeconfig}  (kubectl --context demo get ns)", soft_wrap=True
        )
        console.print(f"rendered bundle: {bundle}", soft_wrap=True)
        for cluster, run in zip(clusters, runs, strict=True):
            await run_upgrade(stack, cluster, bundle, run, console)
            await remove_kept_revision(stack, cluster, run, console)
        console.print(summary_table(runs))
        for run in runs:
            if run.url:
                console.print(f"{run.cluster}: {run.url}", soft_wrap=True)
        state.finished = True
        state.ok = all(run.as_expected for run in runs)
        console.print(
            Text(
                "demo passed" if state.ok else "demo FAILED: an upgrade did not end as expected",
                style="bold green" if state.ok else "bold red",
            )
        )
        if keep_open:
            console.print("servers stay up for browsing; Ctrl-C to stop")
            await asyncio.Event().wait()


def run_demo(
    *, keep_open: bool = False, run_dir: Path | None = None, ui_port: int | None = None
) -> int:
    """Run the demo and return the process exit code.

    0 when both upgrades ended as expected, 1 when one did not, 130 when interrupted before
    they ended. Ctrl-C or SIGTERM stops every server (each is closed in a ``finally``); with
    ``--keep-open`` the Ctrl-C that ends browsing keeps the demo's verdict as exit code.
    """
    console = Console()
    own_dir = run_dir is None
    directory = run_dir or Path(tempfile.mkdtemp(prefix="istio-upgrade-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    state = DemoState()

    async def main() -> None:
        # SIGTERM takes the same path as Ctrl-C: cancel, so every `finally` stops its server.
        with sigterm_cancels():
            await demo_main(console, state, keep_open=keep_open, run_dir=directory, ui_port=ui_port)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("stopped; every server was shut down")
    except (MissingBinaryError, PrometheusStartError, TemporalStartError) as error:
        # A machine without the local servers: say what to install, not a traceback.
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
