"""Start and steer upgrades through the Temporal API (used by the CLI, release tooling, tests).

Every function takes a connected :class:`temporalio.client.Client` whose data converter is
``temporalio.contrib.pydantic.pydantic_data_converter`` (see :func:`connect`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, TLSConfig, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter

from istio_upgrade.models import (
    AbortRequest,
    ApproveRequest,
    Progress,
    UpgradeSpec,
    workflow_id_for,
)

TASK_QUEUE = "istio-upgrade"
"""The workers' default task queue (they read ``TEMPORAL_TASK_QUEUE``; so does the CLI)."""
WORKFLOW_TYPE = "IstioCanaryUpgrade"


def workflow_id(spec: UpgradeSpec) -> str:
    """``istio-upgrade/<cluster>/<revision>``: one upgrade per cluster and target revision."""
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


def _read_env_file(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    return Path(path).read_bytes() if path else None


async def start_upgrade(
    client: Client, spec: UpgradeSpec, *, task_queue: str = TASK_QUEUE
) -> WorkflowHandle[Any, Any]:
    """Start the upgrade of ``spec``, or attach to it if it is already running.

    The id is :func:`workflow_id`; a second trigger for the same cluster and revision
    attaches to the running upgrade instead of starting a twin (``USE_EXISTING``). After an
    upgrade failed or was rolled back the same id may start again (``ALLOW_DUPLICATE``);
    a completed upgrade is not repeated (``ALLOW_DUPLICATE_FAILED_ONLY``).

    Returns:
        The handle of the running (or already running) workflow.
    """
    return await client.start_workflow(
        WORKFLOW_TYPE,
        spec,
        id=workflow_id(spec),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        static_summary=f"Istio upgrade of {spec.cluster.name} to {spec.target_revision}",
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


async def abort(client: Client, upgrade_id: str, who: str, reason: str) -> str:
    """Abort: the upgrade rolls back every migrated batch and removes the new revision."""
    return await _update(client, upgrade_id, "abort", AbortRequest(reason=reason, requested_by=who))


async def _update(client: Client, upgrade_id: str, name: str, arg: Any) -> str:
    args = [] if arg is None else [arg]
    result: str = await handle(client, upgrade_id).execute_update(name, args=args, result_type=str)
    return result
