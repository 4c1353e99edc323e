"""Discover the cluster and plan the upgrade; refuse it when the precheck finds errors."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import (
        check_bundles,
        check_permissions,
        discover,
        plan_cluster,
        probe_prometheus,
    )
    from istio_upgrade.models.activities import (
        BundleCheckInput,
        DiscoverInput,
        PlanInput,
        PlanningResult,
    )
    from istio_upgrade.models.permissions import (
        PermissionReport,
        permission_findings,
        permissions_input,
    )
    from istio_upgrade.models.plan import Finding, Plan, PrecheckReport
    from istio_upgrade.models.progress import BatchProgress, Phase, UpgradeResult
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.planning import plan_upgrade
    from istio_upgrade.workflows.phases.install import sail_installer
    from istio_upgrade.workflows.prometheus_access import prometheus_auth
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import run_step


NO_BUNDLE = Finding(
    severity="error",
    code="INSTALLER_NO_BUNDLE",
    message="installer: name the rendered revision in installer.bundle_path, "
    "installer.bundle_configmap or installer.bundle_yaml (helm template istiod istio/istiod "
    "-n istio-system --set revision=<rev> --version <version>)",
)


PROMETHEUS_PRECHECK = "prometheus-precheck"
"""Upgrades started before the Prometheus probe met a wrong gate URL at their first gate."""

PERMISSION_PRECHECK = "permission-precheck"
"""Upgrades started before the permission precheck existed discover and plan without it."""

PLANNED_BY_ACTIVITY = "planned-by-activity"
"""The ``plan_cluster`` activity discovers and plans; upgrades recorded before discovered
(the whole inventory in their history) and planned in the workflow."""


async def _check_permissions(
    spec: UpgradeSpec, plan: Plan | None, gateway_api: bool
) -> PermissionReport:
    return await run_step(
        check_permissions,
        permissions_input(spec, plan, gateway_api),
        summary="check the worker's permissions",
        heartbeats=True,
    )


def _forbidden(error: ActivityError) -> bool:
    cause = error.cause
    return isinstance(cause, ApplicationError) and cause.type == "Forbidden"


async def _discover(st: UpgradeState, spec: UpgradeSpec) -> PlanningResult:
    """Discovery and planning; refused as a precheck failure when the worker may not read
    the cluster."""
    info = workflow.info()
    try:
        if workflow.patched(PLANNED_BY_ACTIVITY):
            return await run_step(
                plan_cluster,
                PlanInput(spec=spec, upgrade_id=info.workflow_id),
                summary="discover the cluster and plan the batches",
                heartbeats=True,
            )
        inventory = await run_step(
            discover,
            DiscoverInput(cluster=spec.cluster, upgrade_id=info.workflow_id),
            summary="discover the cluster",
            heartbeats=True,
        )
    except ActivityError as error:
        if not _forbidden(error) or not workflow.patched(PERMISSION_PRECHECK):
            raise
        # The first refused request is one of maybe many: name every right the upgrade lacks,
        # as the precheck after planning would (namespaced ones asked cluster-wide only).
        checked = await _check_permissions(spec, None, False)
        refused = error.cause.message if isinstance(error.cause, ApplicationError) else ""
        report = PrecheckReport(
            findings=[
                Finding(
                    severity="error",
                    code="PERMISSION_MISSING",
                    message=f"discovery was refused: {refused or error}",
                ),
                *permission_findings(checked),
            ]
        )
        st.finish(Phase.FAILED)
        result = UpgradeResult(
            outcome="FAILED",
            summary="precheck refused the upgrade: the worker may not read the cluster",
            upgrade_id=st.progress.upgrade_id,
            target_revision=spec.target_revision,
            precheck=report,
            warnings=list(st.progress.warnings),
        )
        raise ApplicationError(
            "precheck failed: " + "; ".join(f.message for f in report.errors),
            result,
            type="PrecheckFailed",
            non_retryable=True,
        ) from None
    st.set_phase(Phase.PLANNING)
    # Workloads opted in per pod (Helm gateways) migrate by their pod template; upgrades
    # recorded before planned without them.
    per_workload = workflow.patched("per-workload-opt-in")
    plan, report = plan_upgrade(inventory, spec, info.workflow_id, per_workload=per_workload)
    return PlanningResult(
        plan=plan,
        report=report,
        tags=inventory.tags,
        gateway_api=inventory.gateway_api_version is not None,
    )


async def discover_and_plan(
    st: UpgradeState, spec: UpgradeSpec
) -> tuple[dict[str, str], Plan, PrecheckReport]:
    """Read the cluster, split its namespaces into batches and precheck the upgrade.

    Returns:
        The tags at discovery (tag → revision), the plan and the precheck report.

    Raises:
        ApplicationError: ``PrecheckFailed`` (the ``UpgradeResult`` as first detail).
    """
    info = workflow.info()
    p = st.progress
    p.upgrade_id = info.workflow_id
    p.cluster = spec.cluster.name
    p.target_revision = spec.target_revision
    p.started_at = workflow.now()
    st.set_phase(Phase.DISCOVERING)
    planned = await _discover(st, spec)
    st.set_phase(Phase.PLANNING)
    plan, report = planned.plan, planned.report
    # The built-in rendering is a reduced istiod, not a chart render: new upgrades must name
    # a rendered bundle. Patched so that upgrades started without one keep their path.
    # Under strategy sail no bundle is named: the same check reads the Istio resource.
    bundled = spec.installer.sources_given()
    if sail_installer(spec) is not None or (bundled and workflow.patched("bundle-precheck")):
        # Read the bundles now, writing nothing, so a bundle that would be refused at
        # install (CRDs, gateways, other revisions' objects) refuses the upgrade before its
        # first write — the cluster lock included.
        checked = await run_step(
            check_bundles,
            BundleCheckInput(
                cluster=spec.cluster,
                version=spec.target.version,
                revision=spec.target_revision,
                installer=spec.installer,
                crds=spec.crds,
            ),
            summary="check the rendered bundles",
        )
        report.findings += [
            Finding(severity="error", code="BUNDLE_REFUSED", message=m) for m in checked.problems
        ]
        report.findings += [
            Finding(severity="info", code="BUNDLE_SKIPPED", message=m) for m in checked.skipped
        ]
    elif not bundled and workflow.patched("bundle-required"):
        report.findings.append(NO_BUNDLE)
    # Ask the API server whether the worker may send every request the upgrade will send,
    # given this plan, before its first write (a dry run too). Patched: upgrades recorded
    # before went on to lock and install without asking.
    if workflow.patched(PERMISSION_PRECHECK):
        permissions = await _check_permissions(spec, plan, planned.gateway_api)
        report.findings += permission_findings(permissions)
    # A gate URL that answers HTML (Grafana, a sign-in page) would only ever be INCONCLUSIVE,
    # found out after the first batch had moved: ask it once now. Patched: upgrades recorded
    # before asked it first at their first gate.
    if workflow.patched(PROMETHEUS_PRECHECK):
        summary = "check the gate's Prometheus answers"
        auth = prometheus_auth(spec.prometheus_auth)
        probe = (
            await run_step(probe_prometheus, spec.prometheus_url, summary=summary)
            if auth is None
            else await run_step(probe_prometheus, spec.prometheus_url, auth, summary=summary)
        )
        if probe.problem is not None and probe.reachable:
            report.findings.append(
                Finding(severity="error", code="PROMETHEUS_NOT_API", message=probe.problem)
            )
        elif probe.problem is not None:
            # It may answer by the first gate; until it does, no batch passes.
            report.findings.append(
                Finding(
                    severity="warning",
                    code="PROMETHEUS_UNREACHABLE",
                    message=f"{probe.problem}; no gate passes until it answers",
                )
            )
    st.plan = plan
    p.source_revision = plan.source_revision or None
    p.warnings += [f.message for f in report.warnings]
    p.batches = [BatchProgress(index=b.index, namespaces=b.namespaces) for b in plan.batches]
    if not report.ok:
        st.finish(Phase.FAILED)
        result = st.result("FAILED", "precheck refused the upgrade", plan, report)
        raise ApplicationError(
            "precheck failed: " + "; ".join(f.message for f in report.errors),
            result,
            type="PrecheckFailed",
            non_retryable=True,
        )
    return planned.tags, plan, report
