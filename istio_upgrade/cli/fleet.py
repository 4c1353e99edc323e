"""``istio-upgrade fleet …`` and ``istio-upgrade schedule …``: rollouts over many clusters.

Every command reads the fleet file (``-f fleet.yaml``) and derives the rollout's id from it
(``istio-fleet.<name>.<revision>``); ``--id`` names a run of a Schedule instead
(``istio-fleet.<name>.<revision>-<timestamp>``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from typing import Any

import click
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from istio_upgrade.cli.errors import CommandError, run
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.specfile import SpecError, error_lines, load_model
from istio_upgrade.models.fleet import FleetProgress, FleetResult, FleetSpec, fleet_workflow_id

FILE_OPTION = click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Fleet spec, YAML or JSON (- for stdin).",
)
ID_OPTION = click.option(
    "--id", "fleet_id", default=None, help="Rollout id; default istio-fleet.<name>.<revision>."
)
OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints one machine-readable document on stdout.",
)
KUBECONFIG_OPTION = click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="kubeconfig whose contexts the clusters name [env KUBECONFIG].",
)


def _emit(value: Any) -> None:
    if isinstance(value, BaseModel):
        click.echo(value.model_dump_json(indent=2))
    else:
        click.echo(json.dumps(value, indent=2, default=str))


def _who(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def load_fleet(path: str) -> FleetSpec:
    """The fleet file, validated (exit 2 with one ``field: message`` line per problem)."""
    return load_model(path, FleetSpec)


def checked(spec: FleetSpec, source: str, kubeconfig: str | None) -> FleetSpec:
    """``spec`` after the starter-side checks (contexts, windows): refused as bad input."""
    from istio_upgrade.client import check_fleet

    try:
        check_fleet(spec, kubeconfig=kubeconfig)
    except ValidationError as error:
        raise SpecError(source, error_lines(error)) from None
    return spec


async def _client(ctx: click.Context) -> Any:
    from istio_upgrade.client import connect

    opts = ctx.find_root().obj
    return await connect(opts.address, opts.namespace, opts.api_key, opts.tls)


def _queue(ctx: click.Context) -> str:
    queue: str = ctx.find_root().obj.task_queue
    return queue


def print_progress(progress: FleetProgress) -> None:
    """The fleet as a table: cluster, stage, group, state, upgrade id, note."""
    click.echo(
        f"fleet {progress.fleet} → {progress.target_revision}: {progress.phase}, stage "
        f"{progress.stage or '-'}, failures {progress.failures}/{progress.budget_allowed} allowed"
        + (" (budget exceeded)" if progress.budget_exceeded else "")
    )
    if progress.waiting:
        click.echo(f"waiting: {progress.waiting}")
    width = max([len(line.cluster) for line in progress.clusters] + [7])
    click.echo(f"{'CLUSTER':<{width}}  {'STAGE':<12} {'STATE':<15} UPGRADE")
    for line in progress.clusters:
        note = f"  {line.note}" if line.note else ""
        click.echo(
            f"{line.cluster:<{width}}  {line.stage:<12} {line.state:<15} {line.upgrade_id}{note}"
        )


_ENDED = {"SUCCEEDED", "FAILED", "ABORTED"}


def _exit_for(phase: str) -> int:
    return {
        "SUCCEEDED": int(ExitCode.OK),
        "FAILED": int(ExitCode.FAILED),
        "ABORTED": int(ExitCode.ROLLED_BACK),
    }.get(phase, int(ExitCode.OK))


@click.group()
def fleet() -> None:
    """Roll a revision over a fleet of clusters: stages, parallel groups, a failure budget.

    \b
    Exit codes as for single upgrades; watch/--wait: 0 every cluster succeeded, 3 aborted,
    4 failed (budget exceeded or clusters failed), 8 status: waits for an approval.
    """


@fleet.command()
@FILE_OPTION
@KUBECONFIG_OPTION
@click.option("--wait", is_flag=True, help="Follow the rollout until it ends, like `watch`.")
@OUTPUT_OPTION
@click.pass_context
def start(
    ctx: click.Context, spec_file: str, kubeconfig: str | None, wait: bool, output: str
) -> None:
    """Start the fleet's rollout (or follow the running one with the same id).

    Refused before anything starts (exit 2) when a cluster's context is not in the
    kubeconfig or the maintenance windows never open.
    """
    from istio_upgrade.client import start_fleet

    async def go() -> int:
        spec = checked(load_fleet(spec_file), spec_file, kubeconfig)
        client = await _client(ctx)
        handle = await start_fleet(client, spec, task_queue=_queue(ctx), check=False)
        if output == "json" and not wait:
            _emit({"workflow_id": handle.id, "run_id": handle.result_run_id})
            return int(ExitCode.OK)
        if output == "text":
            click.echo(f"fleet {handle.id} started (run {handle.result_run_id})")
        if not wait:
            return int(ExitCode.OK)
        return await _watch(client, handle.id, 1.0, output)

    sys.exit(run(go()))


@fleet.command()
@FILE_OPTION
@KUBECONFIG_OPTION
@OUTPUT_OPTION
@click.pass_context
def plan(ctx: click.Context, spec_file: str, kubeconfig: str | None, output: str) -> None:
    """Every cluster's dry run (precheck, batches) and the stage layout; nothing is written.

    Exit code 4 when a cluster's dry run failed or found errors.
    """
    from istio_upgrade.client import plan_fleet

    async def go() -> int:
        spec = checked(load_fleet(spec_file), spec_file, kubeconfig)
        client = await _client(ctx)
        result = await plan_fleet(client, spec, task_queue=_queue(ctx), kubeconfig=kubeconfig)
        bad = [
            name
            for name, one in result["clusters"].items()
            if one["outcome"] != "DRY_RUN" or one.get("errors")
        ]
        if output == "json":
            _emit(result)
        else:
            click.echo(
                f"fleet {result['fleet_id']}: failure budget {result['budget_allowed']} cluster(s)"
            )
            for stage in result["stages"]:
                click.echo(f"stage {stage['name']}" + (" (approval)" if stage["approval"] else ""))
                for group in stage["groups"]:
                    click.echo(f"  group {group['name']} (x{group['max_parallel']}):")
                    for name in group["clusters"]:
                        one = result["clusters"][name]
                        batches = len(one.get("batches") or [])
                        click.echo(f"    {name}: {one['outcome']}, {batches} batches")
                        for error in one.get("errors") or []:
                            click.echo(f"      error: {error}")
                        if one["outcome"] != "DRY_RUN":
                            click.echo(f"      {one['summary']}")
        return int(ExitCode.FAILED) if bad else int(ExitCode.OK)

    sys.exit(run(go()))


def _fleet_id(spec_file: str, fleet_id: str | None) -> str:
    return fleet_id or fleet_workflow_id(load_fleet(spec_file))


async def _progress(client: Any, fleet_id: str) -> FleetProgress:
    from istio_upgrade.client import get_fleet_progress

    return await get_fleet_progress(client, fleet_id)


@fleet.command()
@FILE_OPTION
@ID_OPTION
@OUTPUT_OPTION
@click.pass_context
def status(ctx: click.Context, spec_file: str, fleet_id: str | None, output: str) -> None:
    """The rollout's progress: every cluster's state, the stage, the budget."""

    async def go() -> int:
        wanted = _fleet_id(spec_file, fleet_id)
        progress = await _progress(await _client(ctx), wanted)
        if output == "json":
            _emit(progress)
        else:
            print_progress(progress)
        if progress.phase == "WAITING_APPROVAL":
            return int(ExitCode.WAITING)
        return _exit_for(progress.phase) if progress.phase in _ENDED else int(ExitCode.OK)

    sys.exit(run(go()))


async def _watch(client: Any, fleet_id: str, interval: float, output: str) -> int:
    last = ""
    while True:
        progress = await _progress(client, fleet_id)
        text = progress.model_dump_json()
        if text != last and output == "text":
            print_progress(progress)
            click.echo("")
        last = text
        if progress.phase in _ENDED:
            if output == "json":
                _emit(progress)
            return _exit_for(progress.phase)
        await asyncio.sleep(interval)


@fleet.command()
@FILE_OPTION
@ID_OPTION
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@OUTPUT_OPTION
@click.pass_context
def watch(
    ctx: click.Context, spec_file: str, fleet_id: str | None, interval: float, output: str
) -> None:
    """Follow the rollout until it ends; the exit code says how it ended."""

    async def go() -> int:
        return await _watch(await _client(ctx), _fleet_id(spec_file, fleet_id), interval, output)

    sys.exit(run(go()))


def _answer(output: str, fleet_id: str, action: str, answer: str) -> None:
    if output == "json":
        _emit({"workflow_id": fleet_id, "action": action, "answer": answer})
    else:
        click.echo(answer)


async def _update(coro: Any, fleet_id: str, action: str) -> str:
    from temporalio.client import WorkflowUpdateFailedError

    try:
        answer: str = await coro
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        raise CommandError(
            f"{action} rejected by {fleet_id}: {message}", ExitCode.REJECTED
        ) from None
    return answer


@fleet.command()
@FILE_OPTION
@ID_OPTION
@click.option("--reason", "-m", default="", help="Recorded with the approval.")
@click.option("--who", default=None, help="Who approves; default the OS user.")
@OUTPUT_OPTION
@click.pass_context
def approve(
    ctx: click.Context, spec_file: str, fleet_id: str | None, reason: str, who: str | None,
    output: str,
) -> None:  # fmt: skip
    """Let the stage that waits for approval start (exit 7 when none waits)."""
    from istio_upgrade.client import approve_fleet

    async def go() -> int:
        wanted = _fleet_id(spec_file, fleet_id)
        client = await _client(ctx)
        answer = await _update(approve_fleet(client, wanted, _who(who), reason), wanted, "approve")
        _answer(output, wanted, "approve", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@fleet.command()
@FILE_OPTION
@ID_OPTION
@click.option("--reason", "-m", required=True, help="Why; recorded in every aborted upgrade.")
@click.option("--who", default=None, help="Who aborts; default the OS user.")
@OUTPUT_OPTION
@click.pass_context
def abort(
    ctx: click.Context, spec_file: str, fleet_id: str | None, reason: str, who: str | None,
    output: str,
) -> None:  # fmt: skip
    """Start no further cluster and roll back every running upgrade of the fleet."""
    from istio_upgrade.client import abort_fleet

    async def go() -> int:
        wanted = _fleet_id(spec_file, fleet_id)
        client = await _client(ctx)
        answer = await _update(abort_fleet(client, wanted, _who(who), reason), wanted, "abort")
        _answer(output, wanted, "abort", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@fleet.command()
@FILE_OPTION
@ID_OPTION
@OUTPUT_OPTION
@click.pass_context
def pause(ctx: click.Context, spec_file: str, fleet_id: str | None, output: str) -> None:
    """Start no further cluster; running upgrades pause before their next step."""
    from istio_upgrade.client import pause_fleet

    async def go() -> int:
        wanted = _fleet_id(spec_file, fleet_id)
        answer = await _update(pause_fleet(await _client(ctx), wanted), wanted, "pause")
        _answer(output, wanted, "pause", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@fleet.command()
@FILE_OPTION
@ID_OPTION
@OUTPUT_OPTION
@click.pass_context
def resume(ctx: click.Context, spec_file: str, fleet_id: str | None, output: str) -> None:
    """Resume a paused fleet."""
    from istio_upgrade.client import resume_fleet

    async def go() -> int:
        wanted = _fleet_id(spec_file, fleet_id)
        answer = await _update(resume_fleet(await _client(ctx), wanted), wanted, "resume")
        _answer(output, wanted, "resume", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@fleet.command()
@click.option("--example", is_flag=True, help="Print the example fleet (YAML) instead.")
def schema(example: bool) -> None:
    """Print the JSON schema of the fleet spec (the FleetRollout start form's input)."""
    from istio_upgrade.models.fleet import EXAMPLE_PATH, render_schema

    click.echo(EXAMPLE_PATH.read_text() if example else render_schema(), nl=False)


# --- schedules -----------------------------------------------------------------------------


@click.group()
def schedule() -> None:
    """Temporal Schedules that start a fleet's rollout at calendar times (overlap: SKIP)."""


@schedule.command()
@FILE_OPTION
@KUBECONFIG_OPTION
@click.option(
    "--calendar",
    "calendars",
    multiple=True,
    required=True,
    help="When to start, e.g. 'sat 02:00', 'mon-fri 22:30', 'daily 03:00' (repeatable).",
)
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--id", "schedule_id", default=None, help="Schedule id; default istio-fleet.<name>.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@OUTPUT_OPTION
@click.pass_context
def create(
    ctx: click.Context, spec_file: str, kubeconfig: str | None, calendars: tuple[str, ...],
    timezone: str, schedule_id: str | None, paused: bool, output: str,
) -> None:  # fmt: skip
    """Create a Schedule starting the fleet's rollout at each calendar time."""
    from istio_upgrade.client import create_fleet_schedule

    async def go() -> int:
        spec = checked(load_fleet(spec_file), spec_file, kubeconfig)
        client = await _client(ctx)
        try:
            handle = await create_fleet_schedule(
                client, spec, list(calendars), timezone=timezone, schedule_id=schedule_id,
                task_queue=_queue(ctx), paused=paused, kubeconfig=kubeconfig,
            )  # fmt: skip
        except ValueError as error:
            if isinstance(error, ValidationError):
                raise
            click.echo(f"options: {error}", err=True)
            return int(ExitCode.USAGE)
        if output == "json":
            _emit({"schedule_id": handle.id})
        else:
            click.echo(f"schedule {handle.id} created")
        return int(ExitCode.OK)

    sys.exit(run(go()))


@schedule.command(name="list")
@OUTPUT_OPTION
@click.pass_context
def list_schedules(ctx: click.Context, output: str) -> None:
    """List the fleet Schedules."""
    from istio_upgrade.client import list_fleet_schedules

    async def go() -> int:
        rows = await list_fleet_schedules(await _client(ctx))
        if output == "json":
            _emit(rows)
        else:
            for row in rows:
                nxt = row["next_action_times"][0] if row["next_action_times"] else "-"
                click.echo(f"{row['id']}  {'paused' if row['paused'] else 'active'}  next {nxt}")
        return int(ExitCode.OK)

    sys.exit(run(go()))


@schedule.command()
@click.argument("schedule_id")
@OUTPUT_OPTION
@click.pass_context
def describe(ctx: click.Context, schedule_id: str, output: str) -> None:
    """A Schedule's calendars, state, next times and recent runs."""
    from istio_upgrade.client import describe_fleet_schedule

    async def go() -> int:
        described = await describe_fleet_schedule(await _client(ctx), schedule_id)
        if output == "json":
            _emit(described)
        else:
            for key, value in described.items():
                click.echo(f"{key}: {value}")
        return int(ExitCode.OK)

    sys.exit(run(go()))


def _schedule_action(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text)
    @click.argument("schedule_id")
    @click.option("--note", default="", help="Recorded on the Schedule (pause/unpause).")
    @OUTPUT_OPTION
    @click.pass_context
    def command(ctx: click.Context, schedule_id: str, note: str, output: str) -> None:
        from istio_upgrade import client as api

        async def go() -> int:
            client = await _client(ctx)
            if name == "pause":
                await api.pause_fleet_schedule(client, schedule_id, note)
            elif name == "unpause":
                await api.unpause_fleet_schedule(client, schedule_id, note)
            elif name == "trigger":
                await api.trigger_fleet_schedule(client, schedule_id)
            else:
                await api.delete_fleet_schedule(client, schedule_id)
            if output == "json":
                _emit({"schedule_id": schedule_id, "action": name})
            else:
                click.echo(f"schedule {schedule_id}: {name} done")
            return int(ExitCode.OK)

        sys.exit(run(go()))

    return command


schedule.add_command(_schedule_action("pause", "Stop the Schedule from starting rollouts."))
schedule.add_command(_schedule_action("unpause", "Let the Schedule start rollouts again."))
schedule.add_command(_schedule_action("trigger", "Start the Schedule's rollout now (SKIP)."))
schedule.add_command(_schedule_action("delete", "Delete the Schedule (runs keep running)."))


async def fleet_result(client: Any, fleet_id: str) -> FleetResult | ApplicationError:
    """The rollout's result, or the error it failed with (for scripts and tests)."""
    try:
        result: FleetResult = await client.get_workflow_handle(
            fleet_id, result_type=FleetResult
        ).result()
    except WorkflowFailureError as error:
        if isinstance(error.cause, ApplicationError):
            return error.cause
        raise
    return result
