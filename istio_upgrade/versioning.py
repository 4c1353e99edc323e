"""Worker Versioning: which Worker Deployment Version a worker registers, and the server calls
that roll a new version out (set current, ramp) and tell when an old one has drained.

Upgrades, removals and fleets are ``PINNED`` (the versioned worker's default behaviour; not
declared on the definitions, which an unversioned worker could then not run): a run stays on
the version that started it, so a change to workflow code never meets a history
recorded by other code. A long run moves to the current version only when it continues as new
(``initial_versioning_behavior=AUTO_UPGRADE``, see ``workflows/phases/handover.py``). The
previous version's workers must therefore run until its pinned runs drain; docs/operations.md,
"Rolling out a new worker version", says how.

Environment: ``WORKER_VERSIONING`` (``off``, the default, or ``on``), ``WORKER_DEPLOYMENT_NAME``
(``istio-upgrade``) and ``WORKER_BUILD_ID`` (default: the installed package's version). Off by
default because a versioned worker receives nothing until an operator makes its version current
(``istio-upgrade workers set-current``): a laptop's ``istio-upgrade worker`` must work without
that step; ``deploy/versions/`` turns it on.

The server side follows temporalio/api ``workflowservice/v1/request_response.proto``
(``DescribeWorkerDeployment``, ``SetWorkerDeploymentCurrentVersion``,
``SetWorkerDeploymentRampingVersion``, ``DescribeWorkerDeploymentVersion``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata

from temporalio.api.enums.v1 import VersionDrainageStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentResponse,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

DEFAULT_DEPLOYMENT_NAME = "istio-upgrade"
PACKAGE = "istio-upgrade"
_ON = {"on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no", ""}


class VersioningConfigError(ValueError):
    """A ``WORKER_*`` variable of Worker Versioning is malformed; the message names it."""


def package_version() -> str:
    """The installed distribution's version (the default build id)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(frozen=True)
class VersioningSettings:
    """What ``WORKER_VERSIONING``, ``WORKER_DEPLOYMENT_NAME`` and ``WORKER_BUILD_ID`` say."""

    enabled: bool
    deployment_name: str
    build_id: str

    @property
    def version(self) -> WorkerDeploymentVersion:
        """The Worker Deployment Version this worker registers."""
        return WorkerDeploymentVersion(self.deployment_name, self.build_id)

    def deployment_config(self) -> WorkerDeploymentConfig | None:
        """The worker's deployment config; None when versioning is off (unversioned worker).

        Workflows declare their own behaviour; ``PINNED`` as the default covers any workflow
        registered without one, so that none silently auto-upgrades mid-run.
        """
        if not self.enabled:
            return None
        return WorkerDeploymentConfig(
            version=self.version,
            use_worker_versioning=True,
            default_versioning_behavior=VersioningBehavior.PINNED,
        )


def check_deployment_name(name: str, field: str = "WORKER_DEPLOYMENT_NAME") -> str:
    """A deployment name the server accepts: non-empty, no ``.``, no whitespace."""
    if not name or "." in name or any(c.isspace() for c in name) or len(name) > 255:
        raise VersioningConfigError(
            f"{field}={name!r}: a deployment name is 1-255 characters without '.' or spaces "
            f"(the server splits '<deployment>.<build id>' at the first '.'); "
            f"e.g. {DEFAULT_DEPLOYMENT_NAME!r}"
        )
    return name


def check_build_id(build_id: str, field: str = "WORKER_BUILD_ID") -> str:
    """A build id the server accepts: 1-255 characters, no whitespace, not the reserved one."""
    if (
        not build_id
        or any(c.isspace() for c in build_id)
        or len(build_id) > 255
        or build_id == "__unversioned__"
    ):
        hint = f"; unset it to use the package version ({package_version()})"
        raise VersioningConfigError(
            f"{field}={build_id!r}: a build id is 1-255 characters without spaces, e.g. the "
            f"image tag{hint if field == 'WORKER_BUILD_ID' else ''}"
        )
    return build_id


def settings_from_env(env: Mapping[str, str] | None = None) -> VersioningSettings:
    """Read the versioning variables (see the module docstring).

    Raises:
        VersioningConfigError: A malformed value, naming the variable and the fix.
    """
    env = os.environ if env is None else env
    raw = env.get("WORKER_VERSIONING", "off").strip().lower()
    if raw not in _ON | _OFF:
        raise VersioningConfigError(
            f"WORKER_VERSIONING={raw!r}: use 'on' (register a Worker Deployment Version) "
            "or 'off' (an unversioned worker)"
        )
    name = check_deployment_name(env.get("WORKER_DEPLOYMENT_NAME", DEFAULT_DEPLOYMENT_NAME))
    build_id = check_build_id(env.get("WORKER_BUILD_ID") or package_version())
    return VersioningSettings(enabled=raw in _ON, deployment_name=name, build_id=build_id)


# --- the server's deployment records ---------------------------------------------------------


async def describe_deployment(
    client: Client, deployment_name: str
) -> DescribeWorkerDeploymentResponse | None:
    """The deployment as the server knows it; None before any versioned worker polled."""
    try:
        return await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def registered_build_ids(described: DescribeWorkerDeploymentResponse | None) -> list[str]:
    """Build ids whose workers have polled, oldest first."""
    if described is None:
        return []
    return [
        s.deployment_version.build_id for s in described.worker_deployment_info.version_summaries
    ]


def current_build_id(described: DescribeWorkerDeploymentResponse | None) -> str | None:
    """The current version's build id; None while unversioned workers are current."""
    if described is None:
        return None
    current = described.worker_deployment_info.routing_config.current_deployment_version
    return current.build_id or None


async def wait_registered(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    within: timedelta = timedelta(seconds=60),
) -> DescribeWorkerDeploymentResponse:
    """Wait until a worker of ``version`` has polled (the server lists it in the deployment).

    Raises:
        TimeoutError: No worker of that version polled in time.
    """
    async with asyncio.timeout(within.total_seconds()):
        while True:
            described = await describe_deployment(client, version.deployment_name)
            if version.build_id in registered_build_ids(described):
                assert described is not None
                return described
            await asyncio.sleep(0.5)


async def set_current(
    client: Client, version: WorkerDeploymentVersion, *, identity: str | None = None
) -> None:
    """Make ``version`` current: new runs, and runs continuing as new, start on it.

    Pinned runs stay where they are. The server refuses a version no worker has polled
    (``ignore_missing_task_queues`` stays off), so a typo cannot strand new upgrades.
    """
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity=identity or client.identity,
        )
    )


async def set_ramping(
    client: Client,
    version: WorkerDeploymentVersion,
    percentage: float,
    *,
    identity: str | None = None,
) -> None:
    """Send ``percentage`` of new runs to ``version`` (0 keeps it ramping with no traffic)."""
    if not 0 <= percentage <= 100:
        raise ValueError(f"--percent {percentage:g}: a ramp is between 0 and 100")
    await client.workflow_service.set_worker_deployment_ramping_version(
        SetWorkerDeploymentRampingVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            percentage=percentage,
            identity=identity or client.identity,
        )
    )


async def drainage(client: Client, version: WorkerDeploymentVersion) -> str:
    """The server's drainage status of a version: ``UNSPECIFIED`` (current, ramping or never
    drained), ``DRAINING`` (pinned runs still open) or ``DRAINED`` (safe to retire).

    The server refreshes it periodically (``matching.wv.VersionDrainageStatusRefreshInterval``),
    not at every close, so DRAINED can lag the last run's end.
    """
    response = await client.workflow_service.describe_worker_deployment_version(
        DescribeWorkerDeploymentVersionRequest(
            namespace=client.namespace, deployment_version=version._to_proto()
        )
    )
    info = response.worker_deployment_version_info.drainage_info
    name = VersionDrainageStatus.Name(info.status)
    return name.removeprefix("VERSION_DRAINAGE_STATUS_")
