"""``IstioRevisionRemoval``: uninstall an old revision once nothing uses it any more.

An upgrade keeps its old revision when something still uses it (a bare pod it cannot restart,
a namespace someone relabelled). After the operator has dealt with that, this workflow runs
the upgrade's own last checks — no live pod injected by the revision, no namespace labelled
with it, no tag pointing at it and, when Prometheus is named, no proxy connected to its istiod
— plus one of its own, that no upgrade holds the cluster lock — and only then deletes it.
Refusal fails the workflow (non-retryable ``RevisionInUse``) with the blockers in the message
and the ``RemovalResult`` as first detail.

Deterministic code only; the Kubernetes and Prometheus work happens in the upgrade's activities,
called by reference through ``run_step``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from istio_upgrade.activities.interface import cluster_lock_holder, uninstall_revision
    from istio_upgrade.models.activities import RevisionInput, lock_busy_message
    from istio_upgrade.models.removal import RemovalResult, RemoveRevisionSpec
    from istio_upgrade.workflows.revision_use import revision_use
    from istio_upgrade.workflows.steps import run_step

WORKFLOW_NAME = "IstioRevisionRemoval"


@workflow.defn(name=WORKFLOW_NAME)
class IstioRevisionRemoval:
    """Check that a revision is unused, then uninstall it."""

    def __init__(self) -> None:
        self._step = "validating"
        self.activity_task_queue: str | None = None
        """Task queue of the steps that name no cluster (``steps.activity_task_queue``)."""

    @workflow.query
    def step(self) -> str:
        """What the removal is doing now."""
        return self._step

    def _at(self, step: str) -> None:
        self._step = step
        workflow.set_current_details(f"**Step** {step}")

    @workflow.run
    async def run(self, spec: RemoveRevisionSpec | dict[str, Any]) -> RemovalResult:
        """Remove ``spec.revision`` from ``spec.cluster`` if nothing uses it.

        Returns:
            ``REMOVED``, ``NOT_INSTALLED`` (nothing was left to delete) or ``DRY_RUN``.

        Raises:
            ApplicationError: ``InvalidSpec``, or ``RevisionInUse`` naming what still uses it.
        """
        if not isinstance(spec, RemoveRevisionSpec):
            try:
                spec = RemoveRevisionSpec.model_validate(spec)
            except ValidationError as error:
                raise ApplicationError(
                    f"invalid RemoveRevisionSpec: {error}", type="InvalidSpec", non_retryable=True
                ) from None
        cluster, revision = spec.cluster, spec.revision
        self.activity_task_queue = cluster.task_queue
        result = RemovalResult(cluster=cluster.name, revision=revision, outcome="IN_USE")

        self._at(f"checking that nothing uses revision {revision}")
        result.blockers, result.warnings = await revision_use(
            cluster, revision, cluster.prometheus_url
        )
        # An upgrade holding the cluster may be about to use the revision (its target before
        # the first batch moves, or the old one it would roll back to).
        holder = await run_step(
            cluster_lock_holder,
            cluster,
            summary="is an upgrade holding the cluster?",
            start_to_close=timedelta(minutes=1),
        )
        if holder:
            result.blockers.append(lock_busy_message(cluster.name, holder))

        if result.blockers:
            result.summary = (
                f"revision {revision} is still in use: {'; '.join(result.blockers)}. "
                "Move or delete what uses it (restart pods, relabel namespaces, move tags), "
                "then run the removal again"
            )
            self._at("refused: the revision is still in use")
            raise ApplicationError(result.summary, result, type="RevisionInUse", non_retryable=True)
        if spec.dry_run:
            result.outcome = "DRY_RUN"
            result.summary = f"revision {revision} is unused and can be removed (dry run)"
            self._at(result.summary)
            return result

        self._at(f"uninstalling revision {revision}")
        removed = await run_step(
            uninstall_revision,
            RevisionInput(cluster=cluster, revision=revision),
            summary=f"uninstall revision {revision}",
        )
        result.deleted, result.missing = removed.deleted, removed.missing
        if removed.deleted:
            result.outcome = "REMOVED"
            result.summary = (
                f"revision {revision} removed from {cluster.name}: "
                f"{len(removed.deleted)} object(s) deleted"
            )
        else:
            result.outcome = "NOT_INSTALLED"
            result.summary = f"revision {revision} was not installed on {cluster.name}"
        self._at(result.summary)
        return result
