"""``plan``: a dry run of the upgrade by the worker, which reads the cluster and writes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from istio_upgrade.cli.errors import CommandError
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.outcome import wait_for_end
from istio_upgrade.client import TASK_QUEUE, WORKFLOW_TYPE, workflow_id
from istio_upgrade.models import UpgradeResult, UpgradeSpec

DRY_RUN_TIMEOUT = timedelta(minutes=5)


async def dry_run(
    client: Client, spec: UpgradeSpec, *, task_queue: str = TASK_QUEUE
) -> UpgradeResult:
    """Run the upgrade workflow with ``dry_run`` set and return its plan and precheck.

    The dry run executes in the worker — the process that holds the cluster credentials —
    under its own id so it never attaches to (or blocks) the real upgrade.

    Raises:
        CommandError: The dry run did not end with a plan.
    """
    dry = spec.model_copy(update={"dry_run": True})
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        dry,
        id=f"{workflow_id(spec)}.dry-run-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        execution_timeout=DRY_RUN_TIMEOUT,
        static_summary=f"dry run: {spec.cluster.name} to {spec.target_revision}",
    )
    ending = await wait_for_end(handle)
    if ending.result is None:
        raise CommandError(f"dry run ended {ending.outcome}: {ending.message}", ExitCode.FAILED)
    return ending.result


def print_plan(result: UpgradeResult, console: Console | None = None) -> None:
    """The batches, excluded namespaces and precheck findings of a dry run."""
    console = console or Console()
    plan = result.plan
    if plan is None:
        console.print(f"no plan: {result.summary}")
    else:
        source = plan.source_revision + (f" ({plan.source_version})" if plan.source_version else "")
        console.print(
            f"[bold]{plan.cluster}[/]: {source} → {plan.target_revision} ({plan.target_version})"
        )
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("batch", justify="right")
        table.add_column("namespaces")
        table.add_column("kind")
        for batch in plan.batches:
            kind = "canary" if batch.canary else "gateways" if batch.gateway else ""
            table.add_row(str(batch.index), ", ".join(batch.namespaces), kind)
        console.print(table)
        for excluded in plan.excluded:
            console.print(Text(f"excluded {excluded.namespace}: {excluded.reason}", style="dim"))
        if plan.tags_to_move:
            console.print(f"tags moved at promote: {', '.join(plan.tags_to_move)}")
    if result.precheck is not None:
        for finding in result.precheck.findings:
            style = {"error": "red", "warning": "yellow"}.get(finding.severity, "dim")
            where = f" [{finding.namespace}]" if finding.namespace else ""
            console.print(
                f"[{style}]{finding.severity} {finding.code}{where}: {finding.message}[/]"
            )
