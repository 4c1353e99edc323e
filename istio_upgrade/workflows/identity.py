"""Who an upgrade is in the cluster: the lock's holder and the restart stamps.

The workflow id alone is not enough: ``ALLOW_DUPLICATE_FAILED_ONLY`` lets a failed upgrade run
again under the same id, and that new run must neither re-take a lock its predecessor kept
because the cluster needs a person, nor skip restarts because the predecessor's stamps are
still on the pod templates. The first run id (``first_execution_run_id``) tells the runs apart
and stays the same across continue-as-new, so one upgrade is one identity for its whole life.
"""

from __future__ import annotations

from temporalio import workflow

RUN_IDENTITY_PATCH = "run-identity"
"""Upgrades started before this patch lock and stamp with the bare workflow id."""


def upgrade_identity() -> str:
    """``<workflow id>@<first run id>``; the bare workflow id for upgrades recorded before."""
    info = workflow.info()
    if not workflow.patched(RUN_IDENTITY_PATCH):
        return info.workflow_id
    return f"{info.workflow_id}@{info.first_execution_run_id}"


def stamp(step: str) -> str:
    """The restart stamp of ``step`` (``batch-3``, ``rollback-3``) for this upgrade.

    It starts with the workflow id, which ``wait_rollouts`` uses to tell the workloads this
    upgrade restarted (``stamp_prefix``).
    """
    return f"{upgrade_identity()}/{step}"
