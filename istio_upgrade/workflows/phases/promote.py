"""Promote the target revision: move the revision tags to it, and the undo (restore them)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import move_tags
    from istio_upgrade.models.activities import MoveTagsInput
    from istio_upgrade.models.plan import Plan
    from istio_upgrade.models.progress import Phase
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows.phases import labels
    from istio_upgrade.workflows.phases.install import sail_installer
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import run_step


async def promote(
    st: UpgradeState, spec: UpgradeSpec, plan: Plan, original_tags: dict[str, str]
) -> None:
    """Point ``plan.tags_to_move`` at the target (after an approval, if the spec asks)."""
    target = plan.target_revision
    if spec.approvals.before_promote:
        await st.approval(f"move tags {', '.join(plan.tags_to_move)} to {target}")
    if plan.tags_to_move:
        # Moving a tag moves every namespace that uses it: a change like a batch.
        await st.window(spec.windows, f"move tags {', '.join(plan.tags_to_move)}")
    await st.checkpoint()
    relabelled = [ns for b in plan.batches for ns in b.labelled_namespaces]
    await labels.hold_on_drift(st, spec, plan, relabelled, "promote")
    st.set_phase(Phase.PROMOTING)
    if not plan.tags_to_move:
        return
    tags = plan.tags_to_move
    st.compensations.push("restore tags", lambda: restore_tags(st, spec, original_tags, tags))
    await run_step(
        move_tags,
        MoveTagsInput(
            cluster=spec.cluster,
            tags=tags,
            revision=target,
            original={t: original_tags.get(t) for t in tags},
            installer=sail_installer(spec),
        ),
        summary=f"move tags {', '.join(tags)} to {target}",
        heartbeats=True,
    )
    st.progress.tags_moved = list(tags)
    await labels.restore_own_forms(st, spec, plan)


async def restore_tags(
    st: UpgradeState, spec: UpgradeSpec, original: dict[str, str], tags: list[str]
) -> None:
    """Point every tag back at the revision it named before the upgrade (or remove it)."""
    by_revision: dict[str | None, list[str]] = {}
    for tag in tags:
        by_revision.setdefault(original.get(tag), []).append(tag)
    for revision, group in by_revision.items():
        await run_step(
            move_tags,
            MoveTagsInput(
                cluster=spec.cluster,
                tags=group,
                revision=revision,
                original={t: original.get(t) for t in group},
                installer=sail_installer(spec),
            ),
            summary=f"restore tags {', '.join(group)} to {revision or 'absent'}",
            heartbeats=True,
        )
    st.progress.tags_moved = []
