"""``istio-upgrade workers``: roll out a worker version (status, ramp, set-current).

Thin wrappers over the server's Worker Deployment API (``istio_upgrade.versioning``), the same
as ``temporal worker deployment set-current-version`` / ``set-ramping-version`` /
``describe-version``, so that an operator with only this CLI can follow docs/operations.md,
"Rolling out a new worker version".
"""

from __future__ import annotations

from typing import Any

import click

from istio_upgrade.cli.errors import CommandError, run
from istio_upgrade.cli.exit_codes import ExitCode

DEPLOYMENT_OPTION = click.option(
    "--deployment-name",
    envvar="WORKER_DEPLOYMENT_NAME",
    default="istio-upgrade",
    show_default=True,
    help="Worker Deployment name [env WORKER_DEPLOYMENT_NAME].",
)
BUILD_ID_OPTION = click.option(
    "--build-id", required=True, help="Build id of the version (the worker's WORKER_BUILD_ID)."
)


async def _call(opts: Any, what: str, action: Any) -> Any:
    from temporalio.service import RPCError

    from istio_upgrade.cli.main import _client

    try:
        client = await _client(opts)
    except RuntimeError as error:
        raise CommandError(f"{error}; check --address", ExitCode.UNAVAILABLE) from error
    try:
        return await action(client)
    except RPCError as error:
        raise CommandError(f"{what}: {error.message}", ExitCode.REJECTED) from error


def _version(deployment_name: str, build_id: str) -> Any:
    from temporalio.common import WorkerDeploymentVersion

    from istio_upgrade import versioning

    try:
        versioning.check_deployment_name(deployment_name, "--deployment-name")
        versioning.check_build_id(build_id, "--build-id")
    except versioning.VersioningConfigError as error:
        raise CommandError(str(error), ExitCode.USAGE) from None
    return WorkerDeploymentVersion(deployment_name, build_id)


@click.group()
def workers() -> None:
    """Worker versions: which one is current, ramp a new one, make it current, drain the old."""


@workers.command()
@DEPLOYMENT_OPTION
@click.pass_obj
def status(opts: Any, deployment_name: str) -> None:
    """The versions that polled, which is current or ramping, and each one's drainage."""
    from temporalio.common import WorkerDeploymentVersion

    from istio_upgrade import versioning

    async def show(client: Any) -> list[str]:
        described = await versioning.describe_deployment(client, deployment_name)
        if described is None:
            return [f"no worker of deployment {deployment_name!r} has polled yet"]
        routing = described.worker_deployment_info.routing_config
        lines = []
        for build_id in versioning.registered_build_ids(described):
            role = ""
            if build_id == routing.current_deployment_version.build_id:
                role = "current"
            elif build_id == routing.ramping_deployment_version.build_id:
                role = f"ramping {routing.ramping_version_percentage:g}%"
            version = WorkerDeploymentVersion(deployment_name, build_id)
            drained = await versioning.drainage(client, version)
            lines.append(f"{build_id}\t{role or '-'}\tdrainage {drained}")
        if not routing.current_deployment_version.build_id:
            lines.append("(unversioned workers are current)")
        return lines

    for line in run(_call(opts, "describe", show)):
        click.echo(line)


@workers.command(name="set-current")
@DEPLOYMENT_OPTION
@BUILD_ID_OPTION
@click.pass_obj
def set_current(opts: Any, deployment_name: str, build_id: str) -> None:
    """Make a version current: new upgrades and continued runs start on it; pinned runs stay.

    Refused (exit 7) when no worker of that version has polled yet.
    """
    from istio_upgrade import versioning

    version = _version(deployment_name, build_id)
    run(_call(opts, "set-current", lambda client: versioning.set_current(client, version)))
    click.echo(f"{version.to_canonical_string()} is current")


@workers.command()
@DEPLOYMENT_OPTION
@BUILD_ID_OPTION
@click.option(
    "--percent",
    type=click.FloatRange(0, 100),
    required=True,
    help="Share of new upgrades started on this version.",
)
@click.pass_obj
def ramp(opts: Any, deployment_name: str, build_id: str, percent: float) -> None:
    """Start a share of new upgrades on a version before making it current."""
    from istio_upgrade import versioning

    version = _version(deployment_name, build_id)
    run(
        _call(opts, "ramp", lambda client: versioning.set_ramping(client, version, percent)),
    )
    click.echo(f"{version.to_canonical_string()} ramps at {percent:g}%")
