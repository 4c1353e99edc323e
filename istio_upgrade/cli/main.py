"""The ``istio-upgrade`` command."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError, FailureError, TerminatedError

from istio_upgrade.cli.errors import CommandError, run
from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.process_exit import (
    exit_code_of,
    exit_without_finalization,
    report_native_crashes,
)

OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints one machine-readable document on stdout.",
)


@dataclass
class TemporalOptions:
    """Where the Temporal server is, shared by every command that talks to it."""

    address: str | None
    namespace: str | None
    api_key: str | None
    tls: bool | None
    task_queue: str = "istio-upgrade"


def _emit_json(value: Any) -> None:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--address",
    envvar="TEMPORAL_ADDRESS",
    help="Temporal frontend host:port [env TEMPORAL_ADDRESS; default localhost:7233].",
)
@click.option(
    "--namespace",
    envvar="TEMPORAL_NAMESPACE",
    help="Temporal namespace [env TEMPORAL_NAMESPACE; default default].",
)
@click.option(
    "--api-key",
    envvar="TEMPORAL_API_KEY",
    help="Temporal Cloud API key; implies TLS [env TEMPORAL_API_KEY].",
)
@click.option(
    "--tls/--no-tls",
    default=None,
    help="TLS to the frontend [env TEMPORAL_TLS=true].",
)
@click.option(
    "--task-queue",
    envvar="TEMPORAL_TASK_QUEUE",
    default="istio-upgrade",
    show_default=True,
    help="Task queue of the workers [env TEMPORAL_TASK_QUEUE].",
)
@click.version_option(package_name="istio-upgrade")
@click.pass_context
def cli(
    ctx: click.Context,
    address: str | None,
    namespace: str | None,
    api_key: str | None,
    tls: bool | None,
    task_queue: str,
) -> None:
    """Canary upgrades of the Istio control plane: batched, SLO-gated, rolled back on failure.

    \b
    Exit codes (docs/operations.md#exit-codes):
      0  done; for watch/--wait: the upgrade succeeded
      1  unexpected error
      2  bad input (options, spec file: one `field: message` line per problem)
      3  the upgrade was rolled back
      4  the upgrade failed and the cluster may need attention;
         plan: the precheck found errors; slo check: FAIL
      5  the workflow was cancelled or terminated
      6  Temporal unreachable, no worker answered, or no upgrade with that id
      7  the request was rejected (e.g. nothing to approve, cluster busy)
      8  status: the upgrade waits for an operator (an ended one: its outcome's code);
         slo check: INCONCLUSIVE
    """
    ctx.obj = TemporalOptions(
        address=address, namespace=namespace, api_key=api_key, tls=tls, task_queue=task_queue
    )


async def _client(opts: TemporalOptions) -> Any:
    from istio_upgrade.client import connect

    return await connect(opts.address, opts.namespace, opts.api_key, opts.tls)


# --- spec commands -------------------------------------------------------------------------


@cli.command()
@click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Upgrade spec, YAML or JSON (- for stdin).",
)
@click.option("--wait", is_flag=True, help="Follow the upgrade until it ends, like `watch`.")
@OUTPUT_OPTION
@click.pass_obj
def start(opts: TemporalOptions, spec_file: str, wait: bool, output: str) -> None:
    """Start an upgrade (or attach to the running one with the same id).

    Refused (exit 7, the running upgrade's id on stdout) while another revision is being
    rolled out on the same cluster.
    """
    from istio_upgrade.cli import specs, watching, workers
    from istio_upgrade.client import ClusterBusyError, start_upgrade

    async def go() -> int:
        spec = specs.load_spec(spec_file)
        client = await _client(opts)
        try:
            handle = await start_upgrade(client, spec, task_queue=opts.task_queue)
        except ClusterBusyError as busy:
            # The running upgrade's id on stdout, so scripts can `watch` or `abort` it.
            if output == "json":
                _emit_json({"rejected": str(busy), "running_workflow_id": busy.running_id})
            else:
                click.echo(busy.running_id)
            raise
        await workers.warn_without_workers(client, opts.task_queue, f"upgrade {handle.id}")
        if output == "json" and not wait:
            _emit_json({"workflow_id": handle.id, "run_id": handle.result_run_id})
            return int(ExitCode.OK)
        if output == "text":
            click.echo(f"upgrade {handle.id} started (run {handle.result_run_id})")
        if not wait:
            return int(ExitCode.OK)
        return await watching.follow(client, handle.id, output=output)

    sys.exit(run(go()))


@cli.command()
@click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Upgrade spec, YAML or JSON (- for stdin).",
)
@OUTPUT_OPTION
@click.pass_obj
def plan(opts: TemporalOptions, spec_file: str, output: str) -> None:
    """Dry run by the worker: validate, read the cluster, print batches and findings.

    Nothing is written to the cluster. Exit code 4 when the precheck found errors.
    """
    from istio_upgrade.cli import planning, specs, workers

    async def go() -> int:
        spec = specs.load_spec(spec_file)
        client = await _client(opts)
        await workers.warn_without_workers(client, opts.task_queue, "the dry run")
        result = await planning.dry_run(client, spec, task_queue=opts.task_queue)
        if output == "json":
            _emit_json(result)
        else:
            planning.print_plan(result)
        if result.precheck is not None and not result.precheck.ok:
            return int(ExitCode.FAILED)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command()
@click.option("--example", is_flag=True, help="Print an example spec (YAML) instead.")
def schema(example: bool) -> None:
    """Print the JSON schema of the upgrade spec (the workflow's single argument)."""
    from istio_upgrade.cli import specs

    if example:
        click.echo(specs.example_yaml(), nl=False)
    else:
        click.echo(json.dumps(specs.spec_schema(), indent=2))


# --- running upgrades ----------------------------------------------------------------------


@cli.command()
@click.argument("upgrade_id")
@OUTPUT_OPTION
@click.pass_obj
def status(opts: TemporalOptions, upgrade_id: str, output: str) -> None:
    """Show an upgrade's phase, batches, last gate numbers and what it waits for."""
    from istio_upgrade.cli import watching

    async def go() -> int:
        client = await _client(opts)
        return await watching.show_status(client, upgrade_id, output=output)

    sys.exit(run(go()))


@cli.command()
@click.argument("upgrade_id")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@OUTPUT_OPTION
@click.pass_obj
def watch(opts: TemporalOptions, upgrade_id: str, interval: float, output: str) -> None:
    """Follow an upgrade live until it ends; the exit code is its outcome."""
    from istio_upgrade.cli import watching

    async def go() -> int:
        client = await _client(opts)
        return await watching.follow(client, upgrade_id, output=output, interval=interval)

    sys.exit(run(go()))


def _print_answer(output: str, upgrade_id: str, action: str, answer: str) -> None:
    if output == "json":
        _emit_json({"workflow_id": upgrade_id, "action": action, "answer": answer})
    else:
        click.echo(f"{upgrade_id}: {answer}")


REASON_OPTION = click.option(
    "--reason", "-m", default="", help="Why; recorded in the workflow history."
)
WHO_OPTION = click.option("--who", help="Operator name recorded with the action; default $USER.")


@cli.command()
@click.argument("upgrade_id")
@OUTPUT_OPTION
@click.pass_obj
def pause(opts: TemporalOptions, upgrade_id: str, output: str) -> None:
    """Hold the upgrade before its next step (the running step finishes)."""
    _send_plain_update(opts, upgrade_id, output, "pause")


@cli.command()
@click.argument("upgrade_id")
@OUTPUT_OPTION
@click.pass_obj
def resume(opts: TemporalOptions, upgrade_id: str, output: str) -> None:
    """Resume a paused upgrade."""
    _send_plain_update(opts, upgrade_id, output, "resume")


def _send_plain_update(
    opts: TemporalOptions, upgrade_id: str, output: str, action: Literal["pause", "resume"]
) -> None:
    """Send an argument-less operator update and print the workflow's answer."""
    from istio_upgrade import client as api

    send = api.pause if action == "pause" else api.resume

    async def go() -> int:
        answer = await send(await _client(opts), upgrade_id)
        _print_answer(output, upgrade_id, action, answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command()
@click.argument("upgrade_id")
@REASON_OPTION
@WHO_OPTION
@OUTPUT_OPTION
@click.pass_obj
def approve(
    opts: TemporalOptions, upgrade_id: str, reason: str, who: str | None, output: str
) -> None:
    """Approve the step the upgrade waits on (approval gate or INCONCLUSIVE batch)."""
    from istio_upgrade import client as api

    async def go() -> int:
        answer = await api.approve(await _client(opts), upgrade_id, _who(who), reason)
        _print_answer(output, upgrade_id, "approve", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command()
@click.argument("upgrade_id")
@click.option("--reason", "-m", required=True, help="Why; recorded in the history and the result.")
@WHO_OPTION
@OUTPUT_OPTION
@click.pass_obj
def abort(
    opts: TemporalOptions, upgrade_id: str, reason: str, who: str | None, output: str
) -> None:
    """Abort the upgrade: roll back every migrated batch and remove the new revision."""
    from istio_upgrade import client as api

    async def go() -> int:
        answer = await api.abort(await _client(opts), upgrade_id, _who(who), reason)
        _print_answer(output, upgrade_id, "abort", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command(name="extend-soak")
@click.argument("upgrade_id")
@click.option(
    "--seconds",
    "-s",
    # The bound of ExtendSoakRequest.seconds, checked here so a typo is exit 2, not a traceback.
    type=click.FloatRange(min=0, min_open=True, max=7 * 24 * 3600),
    required=True,
    help="How much longer the current batch soaks (at most 7 days).",
)
@REASON_OPTION
@WHO_OPTION
@OUTPUT_OPTION
@click.pass_obj
def extend_soak(
    opts: TemporalOptions,
    upgrade_id: str,
    seconds: float,
    reason: str,
    who: str | None,
    output: str,
) -> None:
    """Soak the current batch longer before its gate may pass.

    A batch waiting for approval after an INCONCLUSIVE gate goes back to soaking for
    that long from now.
    Rejected (exit 7) when no batch is soaking.
    """
    from istio_upgrade import client as api

    async def go() -> int:
        answer = await api.extend_soak(await _client(opts), upgrade_id, seconds, _who(who), reason)
        _print_answer(output, upgrade_id, "extend_soak", answer)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command(name="remove-revision")
@click.option("--cluster", required=True, help="Cluster name, as in the upgrade spec.")
@click.option("--revision", required=True, help="The revision to remove, e.g. 1-30-3.")
@click.option("--context", help="kubeconfig context of the cluster (as in the upgrade spec).")
@click.option(
    "--prometheus-url",
    help="Prometheus of the cluster; adds the check that no proxy is connected to the revision.",
)
@click.option(
    "--prometheus-auth",
    "auth_path",
    type=click.Path(dir_okay=False),
    help="YAML file of references to the credentials of --prometheus-url, as in the spec's "
    "prometheus_auth (read by the worker, never sent as values).",
)
@click.option("--dry-run", is_flag=True, help="Only check whether the revision could go.")
@OUTPUT_OPTION
@click.pass_obj
def remove_revision(
    opts: TemporalOptions,
    cluster: str,
    revision: str,
    context: str | None,
    prometheus_url: str | None,
    auth_path: str | None,
    dry_run: bool,
    output: str,
) -> None:
    """Remove an old revision an upgrade kept, once nothing uses it any more.

    The worker checks that no live pod, namespace label, tag or connected proxy uses the
    revision, then uninstalls it. Exit 0 when removed (or already gone), 7 when something
    still uses it (named on stderr) or an upgrade of the cluster runs, 2 on bad options,
    5 when the workflow was cancelled, 1 when a step kept failing (the message says why).
    """
    from pydantic import ValidationError

    from istio_upgrade.cli import workers
    from istio_upgrade.cli.specfile import SpecError, error_lines, load_model
    from istio_upgrade.client import start_removal
    from istio_upgrade.models.prometheus_auth import PrometheusAuth
    from istio_upgrade.models.removal import RemovalResult, RemoveRevisionSpec

    async def go() -> int:
        auth = None
        if auth_path is not None:
            auth = load_model(auth_path, PrometheusAuth).model_dump(mode="json", exclude_none=True)
        doc = {
            "cluster": {
                "name": cluster,
                "context": context,
                "prometheus_url": prometheus_url,
                "prometheus_auth": auth,
            },
            "revision": revision,
            "dry_run": dry_run,
        }
        try:
            spec = RemoveRevisionSpec.model_validate(doc)
        except ValidationError as error:
            raise SpecError("options", error_lines(error)) from error
        client = await _client(opts)
        handle = await start_removal(client, spec, task_queue=opts.task_queue)
        await workers.warn_without_workers(client, opts.task_queue, f"removal {handle.id}")
        try:
            result: RemovalResult = await handle.result()
        except WorkflowFailureError as failure:
            cause = failure.cause
            if isinstance(cause, ApplicationError) and cause.type == "RevisionInUse":
                if output == "json" and cause.details:
                    _emit_json(RemovalResult.model_validate(cause.details[0]))
                raise CommandError(f"rejected: {cause.message}", ExitCode.REJECTED) from failure
            if isinstance(cause, CancelledError | TerminatedError):
                raise CommandError(
                    f"removal {handle.id} was cancelled or terminated", ExitCode.CANCELLED
                ) from failure
            # An activity that kept failing: its own error says why (kubeconfig, RBAC …).
            inner: BaseException = cause or failure
            while isinstance(inner, FailureError) and inner.cause is not None:
                inner = inner.cause
            message = getattr(inner, "message", None) or str(inner)
            raise CommandError(
                f"removal {handle.id} failed: {message}; nothing more was deleted than the "
                "workflow's history shows (Web UI, or `temporal workflow show`)",
                ExitCode.ERROR,
            ) from failure
        if output == "json":
            _emit_json(result)
        else:
            click.echo(result.summary)
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
        return int(ExitCode.OK)

    sys.exit(run(go()))


@cli.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="Include finished upgrades.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many upgrades.")
@OUTPUT_OPTION
@click.pass_obj
def list_upgrades(opts: TemporalOptions, show_all: bool, limit: int, output: str) -> None:
    """List upgrades (running ones by default)."""
    from istio_upgrade.cli import watching

    async def go() -> int:
        client = await _client(opts)
        rows = await watching.list_upgrades(client, running_only=not show_all, limit=limit)
        if output == "json":
            _emit_json(rows)
        else:
            watching.print_list(rows)
        return int(ExitCode.OK)

    sys.exit(run(go()))


# --- processes -----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    metavar="NAME[,NAME…]",
    help="Serve only these clusters' activities (task queue istio-upgrade.cluster.<name>), "
    "no workflows; repeatable. Run it next to their API servers.",
)
@click.option(
    "--activity-queue",
    "activity_queues",
    multiple=True,
    metavar="QUEUE",
    help="Serve activities of a cluster whose task_queue does not follow the naming rule.",
)
@click.option(
    "--main/--no-main",
    "main_queue",
    default=None,
    help="Also serve the main task queue (workflows and activities); the default without "
    "--cluster.",
)
def worker(
    clusters: tuple[str, ...], activity_queues: tuple[str, ...], main_queue: bool | None
) -> None:
    """Run the Temporal worker (configuration from the environment, see docs/operations.md)."""
    from istio_upgrade.cli.workers import worker_arguments
    from istio_upgrade.worker import main as worker_main

    names = worker_arguments(clusters, activity_queues, main_queue)
    try:
        worker_main(names, main_queue=main_queue, activity_queues=activity_queues)
    except RuntimeError as error:
        # The SDK's connect() raises RuntimeError("Failed client connect: …").
        if "connect" not in str(error).lower():
            raise
        raise CommandError(
            f"{error}; check TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE", ExitCode.UNAVAILABLE
        ) from error


@cli.command()
@click.option("--keep-open", is_flag=True, help="Keep the servers up for the Web UI until Ctrl-C.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write kubeconfig, bundle and logs; default a new temporary directory.",
)
@click.option("--ui-port", type=int, help="Temporal Web UI port; default 8233 when free.")
@click.option(
    "--fleet",
    is_flag=True,
    help="Run a fleet rollout over 4 sandbox clusters instead: one burns, the failure "
    "budget stops the fleet before its last stage.",
)
def demo(keep_open: bool, run_dir: Path | None, ui_port: int | None, fleet: bool) -> None:
    """Run two upgrades end to end against sandboxes: one succeeds, one is rolled back.

    With --fleet, a fleet of 4 clusters in 3 stages instead: the bad cluster rolls back and
    the failure budget stops the fleet. Exit 0 when everything ended as expected, 1 when not,
    130 when interrupted first.
    """
    if fleet:
        from istio_upgrade.cli.demo_fleet import run_demo_fleet

        sys.exit(run_demo_fleet(keep_open=keep_open, run_dir=run_dir, ui_port=ui_port))
    from istio_upgrade.cli.demo import run_demo

    sys.exit(run_demo(keep_open=keep_open, run_dir=run_dir, ui_port=ui_port))


def _register_commands() -> None:
    from istio_upgrade.cli.fleet import fleet, schedule
    from istio_upgrade.cli.unlock import unlock
    from istio_upgrade.cli.worker_versions import workers

    cli.add_command(unlock)
    cli.add_command(workers)
    cli.add_command(fleet)
    cli.add_command(schedule)


_register_commands()


def _register_optional() -> None:
    try:
        from istio_upgrade.cli.slo import slo
    except ImportError:
        pass
    else:
        cli.add_command(slo)
    # The sandbox is a development tool: the worker image ships without it.
    try:
        from istio_upgrade.cli.sandbox import sandbox
    except ImportError:
        pass
    else:
        cli.add_command(sandbox)


_register_optional()


def main() -> None:
    """Console-script entry point.

    The command's exit code is kept and the process leaves without the interpreter's
    finalization (see :mod:`istio_upgrade.process_exit`): a ``start`` that printed its run id must
    not report a crash of the Temporal runtime's teardown as its result.
    """
    report_native_crashes()
    try:
        cli(prog_name="istio-upgrade")
        code = 0
    except CommandError as error:  # raised outside click's own handling (e.g. tests)
        error.show()
        code = error.exit_code
    except SystemExit as stop:  # click ends every command, successful or not, with SystemExit
        code = exit_code_of(stop)
    exit_without_finalization(code)
