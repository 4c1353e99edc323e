"""Install the target revision beside the old one, and its undo (uninstall)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import (
        apply_crds,
        install_revision,
        uninstall_revision,
        wait_revision_ready,
    )
    from istio_upgrade.models.activities import CrdsInput, InstallInput, RevisionInput
    from istio_upgrade.models.plan import Plan, PrecheckReport
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import ClusterRef, InstallerSpec, UpgradeSpec
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import INTERRUPTIBLE_WAITS, run_step


SAIL_INSTALLER = "sail-installer"
"""Patch: revision and tag steps carry ``installer`` for strategy ``sail`` (which no upgrade
recorded before it could use; manifests upgrades never reach the patch)."""


def sail_installer(spec: UpgradeSpec) -> InstallerSpec | None:
    """The installer handed to the revision and tag steps: set under strategy ``sail`` only,
    so that the activities act on the Sail Operator's resources."""
    if spec.installer.strategy == "sail" and workflow.patched(SAIL_INSTALLER):
        return spec.installer
    return None


async def install_target(
    st: UpgradeState, spec: UpgradeSpec, plan: Plan, report: PrecheckReport
) -> None:
    """Install the target revision and wait until its istiod is Ready."""
    target = plan.target_revision
    uid = workflow.info().workflow_id
    await st.checkpoint()
    await st.window(spec.windows, f"install {target}")
    st.set_phase(Phase.INSTALLING)
    # A target adopted with force existed before this upgrade and may serve namespaces that
    # were already on it; rolling back must not remove a control plane it did not create.
    # Patched so that running upgrades that adopted a revision keep their recorded path.
    adopted = report.target_installed and not report.resumed
    if not spec.rollback.keep_new_revision and not (
        adopted and workflow.patched("keep-adopted-target-on-rollback")
    ):
        st.uninstall_target = True
        push_uninstall_target(st, spec, target)
    # CRDs first, as upstream upgrades base before istiod; no compensation: a rollback never
    # deletes a CRD (that deletes every Istio resource of its kind), and newer CRDs serve the
    # old revision too. Upgrades recorded before the step existed had no ``crds``.
    if spec.crds is not None and workflow.patched("crds-step"):
        await run_step(
            apply_crds,
            CrdsInput(cluster=spec.cluster, crds=spec.crds, version=spec.target.version),
            summary=f"apply the Istio CRDs of {spec.target.version}",
        )
    await run_step(
        install_revision,
        InstallInput(
            cluster=spec.cluster,
            version=spec.target.version,
            revision=target,
            hub=spec.target.hub,
            installer=spec.installer,
            upgrade_id=uid,
        ),
        summary=f"install revision {target}",
        heartbeats=True,
    )
    st.set_phase(Phase.WAITING_REVISION)
    await run_step(
        wait_revision_ready,
        RevisionInput(
            cluster=spec.cluster,
            revision=target,
            timeout_seconds=300,
            installer=sail_installer(spec),
        ),
        summary=f"wait for istiod-{target} Ready",
        wait_seconds=300,
        # The deadline lives in the heartbeat details, so attempts do not extend the wait;
        # each worker shutdown during the wait costs one (``WorkerShutdown``).
        attempts=5,
        interrupt=st.interrupted if workflow.patched(INTERRUPTIBLE_WAITS) else None,
    )
    if spec.approvals.before_first_batch:
        await st.approval(f"migrate batch 0 to {target}")


def push_uninstall_target(st: UpgradeState, spec: UpgradeSpec, target: str) -> None:
    """Make removing the target revision part of the rollback (this upgrade installed it)."""
    st.compensations.push(
        f"uninstall {target}",
        lambda: uninstall(spec.cluster, target, sail_installer(spec)),
        needs_complete_rollback=True,
    )


async def uninstall(
    cluster: ClusterRef, revision: str, installer: InstallerSpec | None = None
) -> None:
    """Delete a revision's control plane (``installer`` set: Sail's ``IstioRevision``)."""
    await run_step(
        uninstall_revision,
        RevisionInput(cluster=cluster, revision=revision, installer=installer),
        summary=f"uninstall revision {revision}",
        heartbeats=True,
    )
