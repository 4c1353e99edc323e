"""Start and steer upgrades through the Temporal API (used by the CLI, release tooling, tests).

Every function takes a connected :class:`temporalio.client.Client` whose data converter is
``temporalio.contrib.pydantic.pydantic_data_converter`` (see :func:`connect`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, TLSConfig, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from istio_upgrade.models import (
    AbortRequest,
    ApproveRequest,
    ExtendSoakRequest,
    Progress,
    UpgradeResult,
    UpgradeSpec,
    workflow_id_for,
)
from istio_upgrade.models.removal import RemovalResult, RemoveRevisionSpec, removal_workflow_id
from istio_upgrade.models.search import search_attributes_for
from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

log = logging.getLogger(__name__)

TASK_QUEUE = "istio-upgrade"
"""The workers' default task queue (they read ``TEMPORAL_TASK_QUEUE``; so does the CLI)."""
WORKFLOW_TYPE = "IstioCanaryUpgrade"
"""The upgrade's workflow type, for visibility queries (starts go by ``IstioCanaryUpgrade.run``)."""


def workflow_id(spec: UpgradeSpec) -> str:
    """``istio-upgrade.<cluster>.<revision>``: one upgrade per cluster and target revision."""
    return workflow_id_for(spec)


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    api_key: str | None = None,
    tls: bool | None = None,
) -> Client:
    """Connect to Temporal the way the worker does.

    Unset arguments come from the environment: ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
    ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS`` (``true``: TLS with the system roots) and the
    mutual-TLS files ``TEMPORAL_TLS_CERT``/``TEMPORAL_TLS_KEY``/``TEMPORAL_TLS_CA``.

    Args:
        address: ``host:port`` of the frontend; default ``localhost:7233``.
        namespace: Temporal namespace; default ``default``.
        api_key: API key (Temporal Cloud); implies TLS.
        tls: Use TLS; default from the environment.

    Returns:
        A client using the pydantic data converter.
    """
    address = address or os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")
    namespace = namespace or os.environ.get("TEMPORAL_NAMESPACE", "default")
    api_key = api_key or os.environ.get("TEMPORAL_API_KEY") or None
    files = {name: _read_env_file(f"TEMPORAL_TLS_{name}") for name in ("CERT", "KEY", "CA")}
    tls_config: TLSConfig | bool
    if files["CERT"] or files["CA"]:
        tls_config = TLSConfig(
            client_cert=files["CERT"],
            client_private_key=files["KEY"],
            server_root_ca_cert=files["CA"],
        )
    elif tls is not None:
        tls_config = tls or bool(api_key)
    else:
        env_tls = os.environ.get("TEMPORAL_TLS", "").lower() in {"1", "true", "yes"}
        tls_config = env_tls or bool(api_key)
    return await Client.connect(
        address,
        namespace=namespace,
        api_key=api_key,
        tls=tls_config,
        data_converter=pydantic_data_converter,
    )


class ConnectionConfigError(ValueError):
    """The Temporal connection settings in the environment cannot be used as they are."""


def _read_env_file(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        # Fail with the variable's name: a bare FileNotFoundError does not say which setting.
        raise ConnectionConfigError(
            f"{variable}={path} cannot be read ({error.strerror}); "
            f"point {variable} at the PEM file or unset it"
        ) from error


class ClusterBusyError(Exception):
    """Another upgrade of the same cluster is running; one upgrade per cluster at a time."""

    def __init__(self, cluster: str, running_id: str) -> None:
        super().__init__(
            f"cluster {cluster} is already being upgraded by {running_id}; "
            "wait for it to end or abort it first"
        )
        self.cluster = cluster
        self.running_id = running_id
        """Workflow id of the running upgrade."""


def running_upgrades_query(cluster: str) -> str:
    """Visibility query for the running upgrades of ``cluster``.

    It matches on the workflow id (``istio-upgrade.<cluster>.…``) rather than the
    ``IstioCluster`` search attribute so it also finds upgrades started without search
    attributes (Web UI form, HTTP API) and works on namespaces that never registered them.
    """
    return (
        f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' "
        f"AND WorkflowId STARTS_WITH 'istio-upgrade.{cluster}.'"
    )


async def running_upgrade_of(client: Client, cluster: str) -> str | None:
    """The workflow id of the upgrade running on ``cluster``, if any (dry runs excluded)."""
    async for execution in client.list_workflows(running_upgrades_query(cluster), limit=20):
        # Dry runs (``plan``) run as ``istio-upgrade.<cluster>.<revision>.dry-run-…``.
        if execution.id.count(".") == 2:
            return execution.id
    return None


def spec_details(spec: UpgradeSpec) -> str:
    """Markdown shown as the workflow's static details in the Web UI."""
    migration = spec.migration
    if migration.batches is not None:
        batches = f"{len(migration.batches)} explicit batches"
    else:
        first = ", ".join(migration.canary) or f"{migration.first_batch_size} namespace(s)"
        batches = (
            f"canary {first}, then x{migration.growth_factor:g} up to {migration.max_batch_size}"
        )
    slos = ", ".join(f"{s.name} {s.objective:g}" for s in spec.gate.slos) or "none"
    approvals = [name for name, on in spec.approvals.model_dump().items() if on]
    lines = [
        f"**Cluster** `{spec.cluster.name}` (context `{spec.cluster.context or 'current'}`)",
        f"**Target** Istio {spec.target.version}, revision `{spec.target_revision}`"
        + (f", from `{spec.source_revision}`" if spec.source_revision else ""),
        f"**Batches** {batches}; selector `{migration.selector or 'all namespaces'}`",
        f"**Gate** SLOs {slos}; soak {spec.gate.soak_seconds:g}s, "
        f"max {spec.gate.max_soak_seconds:g}s, inconclusive → {spec.gate.on_inconclusive}",
        f"**Approvals** {', '.join(approvals) or 'none'}",
        f"**Prometheus** {spec.prometheus_url}",
    ]
    if spec.dry_run:
        lines.append("**Dry run**: nothing is written to the cluster")
    return "\n\n".join(lines)


async def start_upgrade(
    client: Client, spec: UpgradeSpec, *, task_queue: str = TASK_QUEUE
) -> WorkflowHandle[IstioCanaryUpgrade, UpgradeResult]:
    """Start the upgrade of ``spec``, or attach to it if it is already running.

    The id is :func:`workflow_id`; a second trigger for the same cluster and revision
    attaches to the running upgrade instead of starting a twin (``USE_EXISTING``). After an
    upgrade failed or was rolled back the same id may start again; a succeeded upgrade is not
    repeated (``ALLOW_DUPLICATE_FAILED_ONLY``: the start raises
    ``temporalio.exceptions.WorkflowAlreadyStartedError``).

    One upgrade per cluster at a time: while an upgrade of the cluster to *another* revision
    runs, the start is refused with :class:`ClusterBusyError`. The check reads Temporal's
    visibility store, so two starts for different revisions in the same instant could both
    pass it; triggers are operators and release pipelines, not a thundering herd.

    The typed search attributes of :mod:`istio_upgrade.models.search` are set at start; on a
    namespace that has not registered them the upgrade starts without them (and a warning).

    Returns:
        The handle of the running (or already running) workflow.

    Raises:
        ClusterBusyError: Another revision is being rolled out on the cluster.
    """
    upgrade_id = workflow_id(spec)
    running = await running_upgrade_of(client, spec.cluster.name)
    if running is not None and running != upgrade_id:
        raise ClusterBusyError(spec.cluster.name, running)
    options: dict[str, Any] = {
        "id": upgrade_id,
        "task_queue": task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        "static_summary": f"Istio upgrade of {spec.cluster.name} to {spec.target_revision}",
        "static_details": spec_details(spec),
    }
    try:
        # By reference: the type name comes from the class, the handle's result type from
        # ``run`` (``carried`` is left to its default; only the workflow sets it).
        return await client.start_workflow(
            IstioCanaryUpgrade.run, spec, search_attributes=search_attributes_for(spec), **options
        )
    except RPCError as error:
        if error.status != RPCStatusCode.INVALID_ARGUMENT or "search attribute" not in (
            error.message.lower()
        ):
            raise
        log.warning(
            "search attributes not registered in this namespace (%s); starting %s without "
            "them; see docs/operations.md",
            error.message,
            upgrade_id,
        )
        return await client.start_workflow(IstioCanaryUpgrade.run, spec, **options)


REMOVAL_WORKFLOW_TYPE = "IstioRevisionRemoval"
"""The removal's workflow type, for visibility queries."""


async def start_removal(
    client: Client, spec: RemoveRevisionSpec, *, task_queue: str = TASK_QUEUE
) -> WorkflowHandle[IstioRevisionRemoval, RemovalResult]:
    """Start removing an old revision that an upgrade kept, or attach to that removal.

    The workflow uninstalls the revision only if no live pod, namespace label, tag or (with
    ``cluster.prometheus_url``) connected proxy still uses it; otherwise it fails with
    ``RevisionInUse`` and names what does. The id is ``istio-remove-revision.<cluster>.<rev>``
    (``….dry-run`` for a dry run) and may run again after a refusal.

    Raises:
        ClusterBusyError: An upgrade of the cluster is running; its target revision may not be
            in use *yet*, so nothing is removed while one runs.
    """
    running = await running_upgrade_of(client, spec.cluster.name)
    if running is not None:
        raise ClusterBusyError(spec.cluster.name, running)
    return await client.start_workflow(
        IstioRevisionRemoval.run,
        spec,
        id=removal_workflow_id(spec),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"Remove Istio revision {spec.revision} from {spec.cluster.name}"
        + (" (dry run)" if spec.dry_run else ""),
    )


def handle(client: Client, upgrade_id: str) -> WorkflowHandle[Any, Any]:
    """The handle of an upgrade by workflow id (latest run)."""
    return client.get_workflow_handle(upgrade_id)


async def get_progress(client: Client, upgrade_id: str) -> Progress:
    """The upgrade's ``progress`` query: phase, batches, gate results, what it waits for."""
    result: Progress = await handle(client, upgrade_id).query("progress", result_type=Progress)
    return result


async def approve(client: Client, upgrade_id: str, who: str, comment: str = "") -> str:
    """Approve the step the upgrade waits on (an approval gate or an INCONCLUSIVE gate).

    Returns:
        The upgrade's answer, e.g. ``approved: before_promote``.

    Raises:
        temporalio.client.WorkflowUpdateFailedError: Nothing waits for an approval.
    """
    return await _update(
        client, upgrade_id, "approve", ApproveRequest(approver=who, comment=comment)
    )


async def pause(client: Client, upgrade_id: str) -> str:
    """Hold the upgrade before its next step; the running step finishes first."""
    return await _update(client, upgrade_id, "pause", None)


async def resume(client: Client, upgrade_id: str) -> str:
    """Resume a paused upgrade."""
    return await _update(client, upgrade_id, "resume", None)


async def extend_soak(
    client: Client, upgrade_id: str, seconds: float, who: str = "", reason: str = ""
) -> str:
    """Soak the current batch ``seconds`` longer before its gate may pass.

    Also sends a batch that waits for approval after an INCONCLUSIVE gate back to soaking.

    Raises:
        temporalio.client.WorkflowUpdateFailedError: No batch is soaking.
    """
    request = ExtendSoakRequest(seconds=seconds, requested_by=who, reason=reason)
    return await _update(client, upgrade_id, "extend_soak", request)


async def abort(client: Client, upgrade_id: str, who: str, reason: str) -> str:
    """Abort: the upgrade rolls back every migrated batch and removes the new revision."""
    return await _update(client, upgrade_id, "abort", AbortRequest(reason=reason, requested_by=who))


async def _update(client: Client, upgrade_id: str, name: str, arg: Any) -> str:
    args = [] if arg is None else [arg]
    result: str = await handle(client, upgrade_id).execute_update(name, args=args, result_type=str)
    return result
