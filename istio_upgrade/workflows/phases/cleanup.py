"""Clean up after promotion: a grace period, then remove the old revision if nothing uses it.

Past the grace period the upgrade no longer rolls back (abort is refused): every namespace is
on the new revision and the tags have moved. A removal that is blocked or fails leaves the old
revision installed, a warning, and the command that finishes the job.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.plan import Plan
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.phases.install import sail_installer, uninstall
    from istio_upgrade.workflows.revision_use import revision_use
    from istio_upgrade.workflows.state import UpgradeState


def removal_command(spec: UpgradeSpec, revision: str) -> str:
    """The command that finishes removing a revision the upgrade had to keep."""
    if sail_installer(spec) is not None:
        # The operator's IstioRevision: remove-revision knows manifests installs only.
        return f"`kubectl delete istiorevision {revision}` (or let the Sail Operator prune it)"
    return f"`istio-upgrade remove-revision --cluster {spec.cluster.name} --revision {revision}`"


async def clean_up(st: UpgradeState, spec: UpgradeSpec, plan: Plan) -> bool:
    """Wait out the grace period, then remove the old revision; True when it was removed."""
    st.set_phase(Phase.GRACE)
    await st.sleep(spec.cleanup.grace_seconds)
    await st.checkpoint()
    st.no_return = True
    st.compensations.clear()
    st.set_phase(Phase.CLEANING_UP)
    removed, warnings = await _cleanup(spec, plan.source_revision)
    st.progress.warnings += warnings
    return removed


async def _cleanup(spec: UpgradeSpec, old: str) -> tuple[bool, list[str]]:
    """Remove the old revision if nothing uses it; (removed, warnings)."""
    if spec.cleanup.keep_old_revision:
        return False, [f"revision {old} kept (cleanup.keep_old_revision)"]
    try:
        return await _remove_old(spec, old)
    except FailureError as error:
        # Every namespace is on the new revision and the tags have moved: the upgrade
        # succeeded. Only the old control plane's removal did not; say how to finish it.
        cause = f": {error.cause}" if error.cause else ""
        return False, [
            f"revision {old} kept: removing it failed ({error}{cause}); once the cause is "
            f"fixed, run {removal_command(spec, old)}"
        ]


async def _remove_old(spec: UpgradeSpec, old: str) -> tuple[bool, list[str]]:
    blockers, warnings = await revision_use(
        spec.cluster, old, spec.prometheus_url, spec.prometheus_auth
    )
    if blockers:
        warnings.append(
            f"revision {old} kept, still in use: {'; '.join(blockers)}; once nothing uses "
            f"it, run {removal_command(spec, old)}"
        )
        return False, warnings
    await uninstall(spec.cluster, old, sail_installer(spec))
    return True, warnings
