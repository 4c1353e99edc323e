"""``status``, ``watch`` and ``list``: read an upgrade's progress and outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionStatus

from istio_upgrade.cli.errors import CommandError
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.outcome import Ending, closed_status, wait_for_end
from istio_upgrade.cli.render import progress_view
from istio_upgrade.client import WORKFLOW_TYPE, get_progress, handle
from istio_upgrade.models import Progress
from istio_upgrade.models.search import CLUSTER, OUTCOME, PHASE

QUERY_TIMEOUT_S = 5.0
"""A query needs a worker; without one it would wait, so ``watch`` gives up on a refresh."""


async def try_progress(client: Client, upgrade_id: str) -> Progress | None:
    """The progress query, or None when no worker answers in time or the query fails."""
    try:
        return await asyncio.wait_for(get_progress(client, upgrade_id), QUERY_TIMEOUT_S)
    except Exception:  # a missing worker or a closed run must not stop the refresh loop
        return None


def _document(progress: Progress | None, ending: Ending | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "progress": progress.model_dump(mode="json") if progress else None,
    }
    if ending is not None:
        doc["outcome"] = ending.outcome
        doc["message"] = ending.message
        doc["result"] = ending.result.model_dump(mode="json") if ending.result else None
        doc["exit_code"] = int(ending.exit_code)
    return doc


async def show_status(client: Client, upgrade_id: str, *, output: str) -> int:
    """Print the progress (and the outcome when the run has ended); return the exit code.

    Exit codes: the outcome's for an ended upgrade, 8 while it waits for an operator, else 0.
    """
    wf = handle(client, upgrade_id)
    status = await closed_status(wf)  # raises NOT_FOUND for an unknown id
    ending = await wait_for_end(wf) if status is not None else None
    try:
        progress = await asyncio.wait_for(get_progress(client, upgrade_id), QUERY_TIMEOUT_S)
    except TimeoutError:
        raise CommandError(
            f"no worker answered the progress query of {upgrade_id} within "
            f"{QUERY_TIMEOUT_S:g}s; is `istio-upgrade worker` polling its task queue?",
            ExitCode.UNAVAILABLE,
        ) from None
    if output == "json":
        click.echo(json.dumps(_document(progress, ending), indent=2))
    else:
        console = Console()
        console.print(progress_view(progress))
        if ending is not None:
            console.print(Text(f"ended {ending.outcome}: {ending.message}"))
    if ending is not None:
        return int(ending.exit_code)
    return int(ExitCode.WAITING if progress.waiting_for else ExitCode.OK)


async def follow_live(
    client: Client,
    upgrade_id: str,
    *,
    console: Console | None,
    interval: float = 1.0,
) -> tuple[Ending, Progress | None]:
    """Refresh the progress until the upgrade ends; return its ending and last progress.

    Args:
        client: Connected client.
        upgrade_id: Workflow id.
        console: Where the live view draws (updated in place); None draws nothing.
        interval: Seconds between refreshes.
    """
    wf = handle(client, upgrade_id)
    await wf.describe()  # fail fast (NOT_FOUND) on a wrong id
    end_task = asyncio.create_task(wait_for_end(wf))
    progress: Progress | None = None
    live = Live(console=console, refresh_per_second=4) if console is not None else None
    try:
        if live is not None:
            live.start()
        while not end_task.done():
            latest = await try_progress(client, upgrade_id)
            if latest is not None:
                progress = latest
                if live is not None:
                    live.update(progress_view(progress))
            await asyncio.wait({end_task}, timeout=interval)
        ending = end_task.result()
        progress = await try_progress(client, upgrade_id) or progress
        if live is not None and progress is not None:
            live.update(progress_view(progress))
    finally:
        if live is not None:
            live.stop()
        if not end_task.done():
            end_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await end_task
    return ending, progress


async def follow(
    client: Client, upgrade_id: str, *, output: str = "text", interval: float = 1.0
) -> int:
    """``watch``: follow the upgrade until it ends; return the outcome's exit code.

    In text mode the screen updates in place; in json mode one document is printed at the
    end with the last progress and the outcome.
    """
    console = Console() if output == "text" else None
    ending, progress = await follow_live(client, upgrade_id, console=console, interval=interval)
    if console is None:
        click.echo(json.dumps(_document(progress, ending), indent=2))
    else:
        style = "green" if ending.exit_code == ExitCode.OK else "yellow"
        console.print(Text(f"ended {ending.outcome}: {ending.message}", style=style))
    return int(ending.exit_code)


async def list_upgrades(
    client: Client, *, running_only: bool = True, limit: int = 50
) -> list[dict[str, Any]]:
    """Upgrades known to Temporal, newest first, as plain rows."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}'"
    if running_only:
        query += " AND ExecutionStatus = 'Running'"
    else:
        # A long upgrade continues as new between batches: list its current run only.
        query += " AND ExecutionStatus != 'ContinuedAsNew'"
    rows: list[dict[str, Any]] = []
    async for execution in client.list_workflows(query, limit=limit):
        status = execution.status
        attributes = execution.typed_search_attributes
        rows.append(
            {
                "workflow_id": execution.id,
                "run_id": execution.run_id,
                "status": status.name if isinstance(status, WorkflowExecutionStatus) else None,
                # Set when the upgrade was started with search attributes (CLI, client API).
                "cluster": attributes.get(CLUSTER),
                "phase": attributes.get(PHASE),
                "outcome": attributes.get(OUTCOME),
                "started": execution.start_time.isoformat(),
                "closed": execution.close_time.isoformat() if execution.close_time else None,
            }
        )
    return rows


def print_list(rows: list[dict[str, Any]]) -> None:
    """The rows of :func:`list_upgrades` as a table."""
    if not rows:
        click.echo("no upgrades")
        return
    table = Table(show_edge=False, pad_edge=False)
    columns = ("workflow_id", "status", "phase", "outcome", "started", "closed")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(row[column] or "" for column in columns))
    Console().print(table)
