"""Start and steer upgrades through the Temporal API (used by the CLI, release tooling, tests).

Every function takes a connected :class:`temporalio.client.Client` whose data converter is
``temporalio.contrib.pydantic.pydantic_data_converter`` (see :func:`connect`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    TLSConfig,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS
from temporalio.exceptions import WorkflowAlreadyStartedError
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
from istio_upgrade.models.fleet import (
    FleetAbortRequest,
    FleetApproveRequest,
    FleetProgress,
    FleetResult,
    FleetSpec,
    fleet_workflow_id,
)
from istio_upgrade.models.removal import RemovalResult, RemoveRevisionSpec, removal_workflow_id
from istio_upgrade.models.search import FLEET, PHASE, TARGET_REVISION, search_attributes_for
from istio_upgrade.models.slo import refusal
from istio_upgrade.workflows.fleet import FleetRollout
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


# Today's variables, kept as aliases of envconfig's standard names (the standard name wins).
_TLS_FILE_ALIASES = {
    "TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT",
    "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY",
    "TEMPORAL_TLS_CA": "TEMPORAL_TLS_SERVER_CA_CERT",
}
_PROFILE_TLS_KEYS = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "client_cert_path",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "client_key_path",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "server_ca_cert_path",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def connect_options(
    address: str | None = None,
    namespace: str | None = None,
    api_key: str | None = None,
    tls: bool | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments :func:`connect` passes to ``Client.connect``.

    Settings come, strongest first, from the explicit arguments, then the environment, then
    the profile of Temporal's client config file (``temporalio.envconfig``, the file
    ``temporal config`` writes): ``TEMPORAL_CONFIG_FILE`` (default
    ``~/.config/temporalio/temporal.toml``), ``TEMPORAL_PROFILE`` (default ``default``),
    ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``,
    ``TEMPORAL_TLS_CLIENT_CERT_PATH``/``_DATA``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``/``_DATA``,
    ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``/``_DATA``, ``TEMPORAL_TLS_SERVER_NAME`` and
    ``TEMPORAL_GRPC_META_*``. The older ``TEMPORAL_TLS_CERT``/``KEY``/``CA`` (file paths) are
    aliases of the ``…_PATH`` variables; ``TEMPORAL_TLS`` accepts ``true/false/1/0/yes/no/on/off``.
    An empty variable counts as unset. An API key or any TLS setting turns TLS on unless TLS
    is disabled explicitly (``tls=False`` or ``TEMPORAL_TLS=false``).

    Args:
        address: ``host:port`` of the frontend; default ``localhost:7233``.
        namespace: Temporal namespace; default ``default``.
        api_key: API key (Temporal Cloud); implies TLS.
        tls: Use TLS (with the configured certificates, if any); default from the config.
        profile: Profile of the config file; beats ``TEMPORAL_PROFILE``.
        environ: The environment to read; default ``os.environ``.

    Returns:
        ``target_host``, ``namespace``, ``tls``, ``data_converter`` (pydantic) and, when set,
        ``api_key`` and ``rpc_metadata``.

    Raises:
        ConnectionConfigError: A setting is unusable (missing config file or profile, a file
            that cannot be read, a certificate without its key, a non-boolean TEMPORAL_TLS).
    """
    env, origin = _standard_environ(os.environ if environ is None else environ)
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        # envconfig ignores a missing file silently; a typo would connect to localhost.
        raise ConnectionConfigError(
            f"TEMPORAL_CONFIG_FILE={config_file} is not a file; fix the path or unset it"
        )
    try:
        loaded = ClientConfigProfile.load(profile=profile, override_env_vars=env)
    except RuntimeError as error:  # temporal_sdk_bridge.ConfigError
        where = f" (TEMPORAL_CONFIG_FILE={config_file})" if config_file else ""
        raise ConnectionConfigError(f"Temporal client config{where}: {error}") from error
    key = api_key or loaded.api_key or None
    options: dict[str, Any] = {
        "target_host": address or loaded.address or "localhost:7233",
        "namespace": namespace or loaded.namespace or "default",
        "tls": _tls_option(loaded.tls, tls, api_key=bool(key), origin=origin),
        "data_converter": pydantic_data_converter,
    }
    if key:
        options["api_key"] = key
    if loaded.grpc_meta:
        options["rpc_metadata"] = dict(loaded.grpc_meta)
    return options


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    api_key: str | None = None,
    tls: bool | None = None,
    *,
    profile: str | None = None,
) -> Client:
    """Connect to Temporal the way the worker does.

    Unset arguments come from the environment and Temporal's client config file, as
    :func:`connect_options` describes (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
    ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``, ``TEMPORAL_PROFILE`` …).

    Args:
        address: ``host:port`` of the frontend; default ``localhost:7233``.
        namespace: Temporal namespace; default ``default``.
        api_key: API key (Temporal Cloud); implies TLS.
        tls: Use TLS; default from the environment.
        profile: Profile of the client config file; default ``TEMPORAL_PROFILE`` or ``default``.

    Returns:
        A client using the pydantic data converter.

    Raises:
        ConnectionConfigError: The settings cannot be used as they are.
    """
    options = connect_options(address, namespace, api_key, tls, profile=profile)
    return await Client.connect(**options)


def _standard_environ(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``environ`` as envconfig should read it, and which variable supplied each TLS path.

    Empty values are dropped (unset, as before envconfig), the old file variables become
    their ``…_PATH`` names unless a standard ``…_PATH``/``…_DATA`` is set, and ``TEMPORAL_TLS``
    is normalised: envconfig reads only ``true``/``false``/``1``/``0`` and takes any other
    value, ``no`` included, as "TLS on".
    """
    env = {name: value for name, value in environ.items() if value != ""}
    origin: dict[str, str] = {}
    for alias, standard in _TLS_FILE_ALIASES.items():
        value = env.pop(alias, None)
        path_var = f"{standard}_PATH"
        if path_var in env:
            origin[path_var] = path_var
        elif value is not None and f"{standard}_DATA" not in env:
            env[path_var] = value
            origin[path_var] = alias
    if "TEMPORAL_TLS" in env:
        flag = env["TEMPORAL_TLS"].strip().lower()
        if flag not in _TRUE | _FALSE:
            raise ConnectionConfigError(
                f"TEMPORAL_TLS={env['TEMPORAL_TLS']} is not a boolean; set true or false"
            )
        env["TEMPORAL_TLS"] = "true" if flag in _TRUE else "false"
    return env, origin


def _tls_option(
    config: ClientConfigTLS | None,
    explicit: bool | None,
    *,
    api_key: bool,
    origin: Mapping[str, str],
) -> TLSConfig | bool:
    if explicit is False or (explicit is None and config is not None and config.disabled):
        return False
    if config is not None:
        sources = {
            "TEMPORAL_TLS_CLIENT_CERT_PATH": config.client_cert,
            "TEMPORAL_TLS_CLIENT_KEY_PATH": config.client_private_key,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": config.server_root_ca_cert,
        }
        read = {name: _read_source(name, source, origin) for name, source in sources.items()}
        cert, key = read["TEMPORAL_TLS_CLIENT_CERT_PATH"], read["TEMPORAL_TLS_CLIENT_KEY_PATH"]
        if (cert is None) != (key is None):
            given, missing = ("key", "certificate") if cert is None else ("certificate", "key")
            raise ConnectionConfigError(
                f"a TLS client {given} is set without its {missing}: set both "
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH "
                "(or TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY), or both in the profile"
            )
        ca = read["TEMPORAL_TLS_SERVER_CA_CERT_PATH"]
        if cert is not None or ca is not None or config.server_name:
            return TLSConfig(
                server_root_ca_cert=ca,
                domain=config.server_name or None,
                client_cert=cert,
                client_private_key=key,
            )
        if config.disabled is None:
            # A [tls] table or TLS variable without any value still means "TLS on".
            return True
    return bool(explicit) or api_key or (config is not None and config.disabled is False)


def _read_source(
    variable: str, source: str | bytes | Path | None, origin: Mapping[str, str]
) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    if isinstance(source, str):
        return source.encode()
    try:
        return source.read_bytes()
    except OSError as error:
        # Fail with the setting's name: a bare FileNotFoundError does not say which one.
        name = origin.get(variable)
        if name:
            setting, fix = f"{name}={source}", f"point {name} at the PEM file or unset it"
        else:
            key = _PROFILE_TLS_KEYS[variable]
            setting, fix = f"tls.{key} {source} of the Temporal profile", "fix the profile"
        raise ConnectionConfigError(
            f"{setting} cannot be read ({error.strerror}); {fix}"
        ) from error


class ConnectionConfigError(ValueError):
    """The Temporal connection settings in the environment cannot be used as they are."""


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
        f"**Prometheus** {spec.prometheus_url}"
        + (f" ({spec.prometheus_auth.describe()})" if spec.prometheus_auth else ""),
    ]
    if spec.dry_run:
        lines.append("**Dry run**: nothing is written to the cluster")
    return "\n\n".join(lines)


class SpecConflictError(Exception):
    """The upgrade with this id is running with a different spec: a start would silently attach
    the new spec's caller to the old spec's upgrade."""

    def __init__(self, upgrade_id: str, differences: list[str]) -> None:
        shown = "; ".join(differences[:10]) + (
            f"; and {len(differences) - 10} more" if len(differences) > 10 else ""
        )
        super().__init__(
            f"upgrade {upgrade_id} is already running with a different spec ({shown}); wait "
            "for it to end or abort it, or start it with the same spec to follow it"
        )
        self.upgrade_id = upgrade_id
        self.differences = differences


def spec_differences(running: UpgradeSpec, wanted: UpgradeSpec) -> list[str]:
    """``field: running → wanted`` for every leaf that differs (dotted paths)."""

    def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
            return out
        return {prefix: value}

    def short(value: Any) -> str:
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    old, new = leaves(running.model_dump(mode="json")), leaves(wanted.model_dump(mode="json"))
    return [
        f"{key}: {short(old.get(key))} → {short(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


async def running_spec(handle: WorkflowHandle[Any, Any]) -> UpgradeSpec | None:
    """The spec the running upgrade was started (or continued) with, from its first event."""
    async for event in handle.fetch_history_events(page_size=1):
        attributes = event.workflow_execution_started_event_attributes
        payloads = list(attributes.input.payloads)
        if not payloads:
            return None
        decoded = await handle._client.data_converter.decode(payloads[:1], [UpgradeSpec])
        value = decoded[0]
        return value if isinstance(value, UpgradeSpec) else UpgradeSpec.model_validate(value)
    return None


def dry_run_id(spec: UpgradeSpec) -> str:
    """A dry run's own id (``….dry-run-<random>``): it never takes, nor uses up, the upgrade's."""
    return f"{workflow_id(spec)}.dry-run-{uuid.uuid4().hex[:8]}"


async def start_upgrade(
    client: Client, spec: UpgradeSpec, *, task_queue: str = TASK_QUEUE
) -> WorkflowHandle[IstioCanaryUpgrade, UpgradeResult]:
    """Start the upgrade of ``spec``, or follow it if it is already running with that spec.

    The id is :func:`workflow_id`; a second trigger for the same cluster and revision follows
    the running upgrade instead of starting a twin — if its spec is the same. A trigger with a
    *different* spec is refused with :class:`SpecConflictError` naming the differences:
    attaching would hand the caller the result of an upgrade it did not ask for. After an
    upgrade failed or was rolled back the same id may start again; a succeeded upgrade is not
    repeated (``ALLOW_DUPLICATE_FAILED_ONLY``: the start raises
    ``temporalio.exceptions.WorkflowAlreadyStartedError``). A dry run (``dry_run: true``)
    always runs under its own id (:func:`dry_run_id`).

    One upgrade per cluster at a time: while an upgrade of the cluster to *another* revision
    runs, the start is refused with :class:`ClusterBusyError`. The check reads Temporal's
    visibility store, so two starts for different revisions in the same instant could both
    pass it; the cluster lock (taken by the workflow before its first write) refuses the
    second one for good.

    The typed search attributes of :mod:`istio_upgrade.models.search` are set at start; on a
    namespace that has not registered them the upgrade starts without them (and a warning).

    Returns:
        The handle of the started (or followed) workflow.

    Raises:
        ClusterBusyError: Another revision is being rolled out on the cluster.
        SpecConflictError: The same upgrade runs with another spec.
    """
    upgrade_id = dry_run_id(spec) if spec.dry_run else workflow_id(spec)
    if not spec.dry_run:
        running = await running_upgrade_of(client, spec.cluster.name)
        if running is not None and running != upgrade_id:
            raise ClusterBusyError(spec.cluster.name, running)
    options: dict[str, Any] = {
        "id": upgrade_id,
        "task_queue": task_queue,
        # FAIL, then follow only after comparing specs: USE_EXISTING would attach any spec.
        "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        "static_summary": f"Istio upgrade of {spec.cluster.name} to {spec.target_revision}"
        + (" (dry run)" if spec.dry_run else ""),
        "static_details": spec_details(spec),
    }
    for attempt in range(2):
        try:
            return await _start(client, spec, options)
        except WorkflowAlreadyStartedError:
            handle: WorkflowHandle[IstioCanaryUpgrade, UpgradeResult] = client.get_workflow_handle(
                upgrade_id, result_type=UpgradeResult
            )
            description = await handle.describe()
            status = description.status
            if status != WorkflowExecutionStatus.RUNNING:
                # Ended between our start and our look: once more, unless it succeeded (a
                # succeeded upgrade is not repeated) or it keeps racing us.
                if status == WorkflowExecutionStatus.COMPLETED or attempt:
                    raise
                continue
            current = await running_spec(handle)
            differences = spec_differences(current, spec) if current is not None else []
            if differences:
                raise SpecConflictError(upgrade_id, differences) from None
            # The running run's handle, as a start returns it (its run id shown by `start`).
            return client.get_workflow_handle(
                upgrade_id,
                run_id=description.run_id,
                first_execution_run_id=description.raw_description.workflow_execution_info.first_run_id
                or None,
                result_type=UpgradeResult,
            )
    raise AssertionError("unreachable")


async def _start(
    client: Client, spec: UpgradeSpec, options: dict[str, Any]
) -> WorkflowHandle[IstioCanaryUpgrade, UpgradeResult]:
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
            options["id"],
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


# --- fleets --------------------------------------------------------------------------------

FLEET_WORKFLOW_TYPE = "FleetRollout"
"""The fleet rollout's workflow type, for visibility queries."""


def kubeconfig_contexts(kubeconfig: str | None = None) -> set[str] | None:
    """The context names of the kubeconfig the starter uses, or None when there is none.

    ``kubeconfig`` may list several files separated by ``:`` like ``KUBECONFIG``; default
    ``KUBECONFIG``, else ``~/.kube/config``. Read as plain YAML: the check needs names only.
    """
    import yaml

    paths = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    names: set[str] = set()
    found = False
    for part in paths.split(os.pathsep):
        path = Path(part).expanduser()
        if not part or not path.is_file():
            continue
        found = True
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for context in document.get("contexts") or []:
            if isinstance(context, dict) and isinstance(context.get("name"), str):
                names.add(context["name"])
    return names if found else None


def check_fleet(
    spec: FleetSpec, *, kubeconfig: str | None = None, now: datetime | None = None
) -> None:
    """What only the starter can check, before anything starts: every cluster's context
    exists in its kubeconfig, and the maintenance windows open again.

    Raises:
        pydantic.ValidationError: One error per problem, located at its field
            (``clusters[2].context``, ``windows``), saying what to do.
    """
    problems: list[tuple[str, str, Any]] = []
    contexts = kubeconfig_contexts(kubeconfig)
    if contexts is not None:
        for index, cluster in enumerate(spec.clusters):
            if cluster.context is not None and cluster.context not in contexts:
                known = ", ".join(sorted(contexts)[:10]) or "none"
                problems.append(
                    (
                        f"clusters[{index}].context",
                        f"context {cluster.context!r} of cluster {cluster.name} is not in the "
                        f"kubeconfig (contexts: {known}); fix the name or add the context "
                        "(kubectl config get-contexts)",
                        cluster.context,
                    )
                )
    problems += spec.window_problems(now or datetime.now(tz=UTC))
    if problems:
        raise refusal(FleetSpec, problems)


def fleet_details(spec: FleetSpec) -> str:
    """Markdown shown as the fleet's static details in the Web UI: the stage layout."""
    budget = spec.failure_budget
    lines = [
        f"**Fleet** `{spec.name}`: {len(spec.clusters)} clusters to `{spec.target_revision}`",
        f"**Failure budget** {spec.budget_allowed()} cluster(s) "
        f"(max({budget.count}, {budget.ratio:g} x {len(spec.clusters)}))",
    ]
    for stage in spec.layout():
        groups = "; ".join(
            f"{g.name} (x{g.max_parallel}): {', '.join(g.clusters)}" for g in stage.groups
        )
        extra = (" after approval" if stage.approval else "") + (
            f", bake {stage.soak_seconds:g}s" if stage.soak_seconds else ""
        )
        lines.append(f"**Stage {stage.name}**{extra}: {groups}")
    return "\n\n".join(lines)


def _fleet_attributes(spec: FleetSpec) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(FLEET, spec.name),
            SearchAttributePair(TARGET_REVISION, spec.target_revision),
            SearchAttributePair(PHASE, "RUNNING"),
        ]
    )


async def start_fleet(
    client: Client,
    spec: FleetSpec,
    *,
    task_queue: str = TASK_QUEUE,
    kubeconfig: str | None = None,
    check: bool = True,
) -> WorkflowHandle[FleetRollout, FleetResult]:
    """Start the rollout of ``spec``, or follow it when it already runs.

    The id is ``istio-fleet.<name>.<revision>``; its children keep the single-cluster ids, so
    a cluster being upgraded by hand or by another fleet is followed, not upgraded twice.

    Args:
        client: Connected client.
        spec: The fleet.
        task_queue: Task queue of the workers running the workflows.
        kubeconfig: Where :func:`check_fleet` looks up the clusters' contexts.
        check: Run :func:`check_fleet` first (contexts, windows).

    Raises:
        pydantic.ValidationError: ``check_fleet`` refused the spec; nothing started.
    """
    if check:
        check_fleet(spec, kubeconfig=kubeconfig)
    options: dict[str, Any] = {
        "id": fleet_workflow_id(spec),
        "task_queue": task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        "static_summary": f"Istio fleet {spec.name}: {len(spec.clusters)} clusters to "
        f"{spec.target_revision}",
        "static_details": fleet_details(spec),
    }
    try:
        return await client.start_workflow(
            FleetRollout.run, spec, search_attributes=_fleet_attributes(spec), **options
        )
    except RPCError as error:
        if error.status != RPCStatusCode.INVALID_ARGUMENT or "search attribute" not in (
            error.message.lower()
        ):
            raise
        log.warning("search attributes not registered (%s); fleet starts without", error.message)
        return await client.start_workflow(FleetRollout.run, spec, **options)


async def plan_fleet(
    client: Client, spec: FleetSpec, *, task_queue: str = TASK_QUEUE, kubeconfig: str | None = None
) -> dict[str, Any]:
    """Every cluster's dry run (precheck and batches) and the stage layout; nothing written.

    The dry runs run side by side (each a ``….dry-run-<random>`` upgrade, as ``plan`` of one
    cluster does); a cluster whose dry run fails is reported with its error.

    Returns:
        ``{"fleet_id", "target_revision", "budget_allowed", "stages": [...], "clusters":
        {name: {"outcome", "summary", "batches", "errors"}}}``.
    """
    check_fleet(spec, kubeconfig=kubeconfig)

    async def one(name: str) -> tuple[str, dict[str, Any]]:
        cluster = spec.cluster_spec(name).model_copy(update={"dry_run": True})
        try:
            handle = await start_upgrade(client, cluster, task_queue=task_queue)
            result = await handle.result()
        except WorkflowFailureError as error:
            return name, {"outcome": "FAILED", "summary": str(error.cause or error)}
        plan = result.plan
        findings = result.precheck.findings if result.precheck else []
        errors = [f.message for f in findings if f.severity == "error"]
        return name, {
            "outcome": result.outcome,
            "summary": result.summary,
            "batches": [b.namespaces for b in plan.batches] if plan else [],
            "errors": errors,
        }

    results = dict(await asyncio.gather(*(one(c.name) for c in spec.clusters)))
    return {
        "fleet_id": fleet_workflow_id(spec),
        "target_revision": spec.target_revision,
        "budget_allowed": spec.budget_allowed(),
        "stages": [stage.model_dump() for stage in spec.layout()],
        "clusters": results,
    }


def fleet_handle(client: Client, fleet_id: str) -> WorkflowHandle[Any, Any]:
    """The handle of a fleet rollout by workflow id (latest run)."""
    return client.get_workflow_handle(fleet_id)


async def get_fleet_progress(client: Client, fleet_id: str) -> FleetProgress:
    """The fleet's ``progress`` query."""
    result: FleetProgress = await fleet_handle(client, fleet_id).query(
        "progress", result_type=FleetProgress
    )
    return result


async def approve_fleet(client: Client, fleet_id: str, who: str, comment: str = "") -> str:
    """Let the fleet's stage that waits for approval start."""
    return await _update(
        client, fleet_id, "approve", FleetApproveRequest(approver=who, comment=comment)
    )


async def abort_fleet(client: Client, fleet_id: str, who: str, reason: str) -> str:
    """Start no further cluster; every running upgrade of the fleet rolls back."""
    return await _update(
        client, fleet_id, "abort", FleetAbortRequest(reason=reason, requested_by=who)
    )


async def pause_fleet(client: Client, fleet_id: str) -> str:
    """Start no further cluster and pause the running upgrades."""
    return await _update(client, fleet_id, "pause", None)


async def resume_fleet(client: Client, fleet_id: str) -> str:
    """Resume a paused fleet."""
    return await _update(client, fleet_id, "resume", None)


# --- schedules -----------------------------------------------------------------------------

SCHEDULE_PREFIX = "istio-fleet."
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def parse_calendar(text: str) -> ScheduleCalendarSpec:
    """``"sat,sun 02:30"``, ``"mon-fri 22:00"`` or ``"daily 03:00"`` as a calendar spec.

    Raises:
        ValueError: Naming what is wrong and an example.
    """
    example = "write it like 'sat 02:00', 'mon-fri 22:30' or 'daily 03:00'"
    parts = text.strip().lower().split()
    if len(parts) != 2:
        raise ValueError(f"calendar {text!r}: {example}")
    days_text, clock = parts
    try:
        hour_text, minute_text = clock.split(":")
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        raise ValueError(f"calendar {text!r}: time {clock!r} is not HH:MM; {example}") from None
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"calendar {text!r}: time {clock!r} is not a time of day; {example}")
    days: list[ScheduleRange] = []
    if days_text not in {"daily", "*"}:
        for item in days_text.split(","):
            first, _, last = item.partition("-")
            if first[:3] not in _DAYS or (last and last[:3] not in _DAYS):
                raise ValueError(f"calendar {text!r}: day {item!r} is not a weekday; {example}")
            start = _DAYS[first[:3]]
            end = _DAYS[last[:3]] if last else start
            if end < start:
                raise ValueError(f"calendar {text!r}: range {item!r} runs backwards; {example}")
            days.append(ScheduleRange(start, end))
    return ScheduleCalendarSpec(
        hour=[ScheduleRange(hour)],
        minute=[ScheduleRange(minute)],
        day_of_week=days or [ScheduleRange(0, 6)],
        comment=text.strip(),
    )


def schedule_id_for(spec: FleetSpec) -> str:
    """``istio-fleet.<name>``: the default id of a fleet's Schedule."""
    return f"{SCHEDULE_PREFIX}{spec.name}"


async def create_fleet_schedule(
    client: Client,
    spec: FleetSpec,
    calendars: list[str],
    *,
    timezone: str = "UTC",
    schedule_id: str | None = None,
    task_queue: str = TASK_QUEUE,
    paused: bool = False,
    kubeconfig: str | None = None,
) -> ScheduleHandle:
    """A Temporal Schedule starting the fleet's rollout at each calendar time.

    Overlap policy SKIP: a rollout still running when the next time comes is left alone and
    that time is skipped. The runs' ids are ``istio-fleet.<name>.<revision>-<timestamp>``
    (Temporal appends the timestamp); their children keep ``istio-upgrade.<cluster>.<rev>``,
    so a run never doubles a cluster's upgrade. The spec is stored in the Schedule's action
    (bounded by ``FleetSpec``'s limits).

    Raises:
        ValueError: A calendar cannot be read.
        pydantic.ValidationError: :func:`check_fleet` refused the spec.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {timezone!r} is not an IANA time zone; write it like Europe/Berlin or UTC"
        ) from None
    check_fleet(spec, kubeconfig=kubeconfig)
    specs = [parse_calendar(c) for c in calendars]
    if not specs:
        raise ValueError("a schedule needs at least one --calendar, e.g. 'sat 02:00'")
    action = ScheduleActionStartWorkflow(
        FleetRollout.run,
        spec,
        id=fleet_workflow_id(spec),
        task_queue=task_queue,
        static_summary=f"Istio fleet {spec.name} to {spec.target_revision} (scheduled)",
        static_details=fleet_details(spec),
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(calendars=specs, time_zone_name=timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=paused, note=f"fleet {spec.name}: {len(spec.clusters)} clusters"
        ),
    )
    return await client.create_schedule(schedule_id or schedule_id_for(spec), schedule)


async def list_fleet_schedules(client: Client) -> list[dict[str, Any]]:
    """The fleet Schedules (ids starting ``istio-fleet.``): id, paused, next run times."""
    rows: list[dict[str, Any]] = []
    async for entry in await client.list_schedules():
        if not entry.id.startswith(SCHEDULE_PREFIX):
            continue
        info = entry.info
        nexts = info.next_action_times if info else []
        recent = info.recent_actions if info else []
        rows.append(
            {
                "id": entry.id,
                "paused": bool(entry.schedule and entry.schedule.state.paused),
                "next_action_times": [t.isoformat() for t in nexts],
                "recent_runs": [getattr(a.action, "workflow_id", "") for a in recent],
            }
        )
    return rows


async def describe_fleet_schedule(client: Client, schedule_id: str) -> dict[str, Any]:
    """A Schedule's state: paused, note, calendars, next times, recent and running runs."""
    description = await client.get_schedule_handle(schedule_id).describe()
    info, schedule = description.info, description.schedule
    return {
        "id": description.id,
        "paused": schedule.state.paused,
        "note": schedule.state.note or "",
        "time_zone": schedule.spec.time_zone_name or "UTC",
        "calendars": [c.comment or str(c) for c in schedule.spec.calendars],
        "overlap": schedule.policy.overlap.name,
        "next_action_times": [t.isoformat() for t in info.next_action_times],
        "recent_runs": [getattr(a.action, "workflow_id", "") for a in info.recent_actions],
        "running": [getattr(a, "workflow_id", "") for a in info.running_actions],
        "skipped_overlap": info.num_actions_skipped_overlap,
    }


async def pause_fleet_schedule(client: Client, schedule_id: str, note: str = "") -> None:
    """Stop the Schedule from starting rollouts until ``unpause``."""
    await client.get_schedule_handle(schedule_id).pause(note=note or "paused")


async def unpause_fleet_schedule(client: Client, schedule_id: str, note: str = "") -> None:
    """Let the Schedule start rollouts again."""
    await client.get_schedule_handle(schedule_id).unpause(note=note or "unpaused")


async def trigger_fleet_schedule(client: Client, schedule_id: str) -> None:
    """Start the Schedule's rollout now (skipped, like a timed run, if one still runs)."""
    await client.get_schedule_handle(schedule_id).trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def delete_fleet_schedule(client: Client, schedule_id: str) -> None:
    """Delete the Schedule; rollouts it started keep running."""
    await client.get_schedule_handle(schedule_id).delete()
