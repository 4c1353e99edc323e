"""Namespace labels after the batches: drift holds the upgrade; promote restores their form.

During its batch a namespace carries ``istio.io/rev=<target>`` without ``istio-injection``.
A GitOps controller that owns namespace labels may set them back mid-upgrade (and then wins
precedence): before each gate and before promote the labels are read again, and a change
holds the upgrade, naming the namespace and the label, instead of judging or promoting a
cluster that is no longer where the plan put it.

Once the tags that served them point at the target (after promote), namespaces get their own
label form back (``istio-injection=enabled``, ``istio.io/rev=<tag>``) — same revision, no
restart — unless the spec pins them (``migration.pin_revision_labels``).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import (
        label_workloads,
        read_namespace_labels,
        relabel_namespaces,
    )
    from istio_upgrade.models.activities import NamespacesInput, RelabelInput, WorkloadLabelInput
    from istio_upgrade.models.plan import NamespaceLabels, Plan, WorkloadRevision
    from istio_upgrade.models.spec import UpgradeSpec
    from istio_upgrade.workflows import identity
    from istio_upgrade.workflows.state import UpgradeState
    from istio_upgrade.workflows.steps import run_step


def drift(current: list[NamespaceLabels], target: str) -> list[str]:
    """What moved away from ``istio.io/rev=<target>`` without ``istio-injection``."""
    found: list[str] = []
    for labels in current:
        if labels.istio_injection is not None:
            found.append(f"{labels.namespace}: istio-injection={labels.istio_injection}")
        if labels.istio_rev != target:
            found.append(f"{labels.namespace}: istio.io/rev={labels.istio_rev or '(absent)'}")
    return found


async def hold_on_drift(
    st: UpgradeState, spec: UpgradeSpec, plan: Plan, namespaces: list[str], before: str
) -> None:
    """Re-read the labels of the migrated ``namespaces``; hold while any has drifted."""
    if not namespaces or not workflow.patched("label-drift-check"):
        return
    while True:
        current = await run_step(
            read_namespace_labels,
            NamespacesInput(
                cluster=spec.cluster, namespaces=namespaces, drifted_from=plan.target_revision
            ),
            summary=f"re-read namespace labels before {before}",
        )
        changed = drift(current, plan.target_revision)
        if not changed:
            return
        why = (
            f"namespace labels changed before {before}: {'; '.join(changed)}, expected "
            f"istio.io/rev={plan.target_revision} — a GitOps controller may be reverting them: "
            "pause its self-heal or change the labels in Git, set them back, then resume"
        )
        st.progress.warnings.append(why)
        await st.hold(why)


def own_forms(plan: Plan) -> list[NamespaceLabels]:
    """The original label form of every migrated namespace a moved tag now serves.

    ``istio-injection=enabled`` (served by ``default``) and ``istio.io/rev=<tag>`` come back;
    a namespace pinned to the old revision itself stays pinned, to the new one.
    """
    forms: list[NamespaceLabels] = []
    moved = set(plan.tags_to_move)
    for batch in plan.batches:
        for original in batch.original_labels:
            if original.istio_injection == "enabled" and "default" in moved:
                forms.append(
                    NamespaceLabels(namespace=original.namespace, istio_injection="enabled")
                )
            elif original.istio_injection is None and original.istio_rev in moved:
                forms.append(
                    NamespaceLabels(namespace=original.namespace, istio_rev=original.istio_rev)
                )
    return forms


def own_gateway_labels(plan: Plan) -> list[WorkloadRevision]:
    """Gateways whose own label a moved tag (or none: the ``default`` tag) now stands for.

    istiod renders the same Deployment for the same owner, so giving a Gateway its label back
    restarts nothing. Pod templates of workloads opted in per pod keep ``istio.io/rev``:
    changing a template label again would restart their pods a second time.
    """
    moved = set(plan.tags_to_move)
    return [
        w
        for b in plan.batches
        for w in b.workloads
        if w.kind == "Gateway"
        and ((w.revision is None and "default" in moved) or w.revision in moved)
    ]


async def restore_own_forms(st: UpgradeState, spec: UpgradeSpec, plan: Plan) -> None:
    """After promote: give namespaces (and Gateways) their own label form back, same revision.

    Cosmetic for the mesh (nothing changes revision): a failure here is a warning naming what
    is left pinned, never a rollback of a promoted upgrade.
    """
    forms = own_forms(plan)
    gateways = own_gateway_labels(plan)
    if spec.migration.pin_revision_labels or not (forms or gateways):
        return
    if not workflow.patched("restore-label-form"):
        return
    try:
        await _restore(spec, plan, forms, gateways)
    except FailureError as error:
        if is_cancelled_exception(error):
            raise
        cause = f": {error.cause}" if error.cause else ""
        st.progress.warnings.append(
            f"giving namespaces and gateways their own labels back failed ({error}{cause}); "
            f"they stay on istio.io/rev={plan.target_revision}, which serves them the same "
            "revision — set their labels back by hand when convenient"
        )


async def _restore(
    spec: UpgradeSpec, plan: Plan, forms: list[NamespaceLabels], gateways: list[WorkloadRevision]
) -> None:
    if forms:
        await run_step(
            relabel_namespaces,
            RelabelInput(cluster=spec.cluster, labels=forms, skip_missing=True),
            summary=f"give {len(forms)} namespaces their own label form back",
            heartbeats=True,
        )
    if gateways:
        await run_step(
            label_workloads,
            WorkloadLabelInput(
                cluster=spec.cluster,
                workloads=gateways,
                stamp=identity.stamp("own-labels"),
                expect_revision=plan.target_revision,
            ),
            summary=f"give {len(gateways)} gateways their own istio.io/rev label back",
            heartbeats=True,
        )
