"""Discover the cluster and plan the upgrade; refuse it when the precheck finds errors."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import check_bundles, discover
    from istio_upgrade.models.activities import BundleCheckInput, DiscoverInput
    from istio_upgrade.models.inventory import ClusterInventory
    from istio_upgrade.models.plan import Finding, Plan, PrecheckReport
    from istio_upgrade.models.progress import BatchProgress, Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.plan import plan_upgrade
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import run_step


NO_BUNDLE = Finding(
    severity="error",
    code="INSTALLER_NO_BUNDLE",
    message="installer: name the rendered revision in installer.bundle_path, "
    "installer.bundle_configmap or installer.bundle_yaml (helm template istiod istio/istiod "
    "-n istio-system --set revision=<rev> --version <version>)",
)


async def discover_and_plan(
    st: UpgradeState, spec: UpgradeSpec
) -> tuple[ClusterInventory, Plan, PrecheckReport]:
    """Read the cluster, split its namespaces into batches and precheck the upgrade.

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
    inventory = await run_step(
        discover,
        DiscoverInput(cluster=spec.cluster, upgrade_id=info.workflow_id),
        summary="discover the cluster",
        heartbeats=True,
    )
    st.set_phase(Phase.PLANNING)
    # Workloads opted in per pod (Helm gateways) migrate by their pod template; upgrades
    # recorded before planned without them.
    per_workload = workflow.patched("per-workload-opt-in")
    plan, report = plan_upgrade(inventory, spec, info.workflow_id, per_workload=per_workload)
    # The built-in rendering is a reduced istiod, not a chart render: new upgrades must name
    # a rendered bundle. Patched so that upgrades started without one keep their path.
    if not spec.installer.sources_given() and workflow.patched("bundle-required"):
        report.findings.append(NO_BUNDLE)
    elif spec.installer.sources_given() and workflow.patched("bundle-precheck"):
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
    return inventory, plan, report
