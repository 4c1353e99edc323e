"""What an upgrade hands to its next run when it continues as new between batches."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from istio_upgrade.models.plan import Plan, PrecheckReport
from istio_upgrade.models.progress import Progress


class Carryover(BaseModel):
    """The state of an upgrade at a batch boundary, enough to go on or to roll back.

    The compensation stack is rebuilt from it: uninstall the target (if this upgrade installed
    it), then roll back every batch before ``next_batch`` in reverse order.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    progress: Progress
    plan: Plan
    report: PrecheckReport
    original_tags: dict[str, str] = Field(default_factory=dict)
    """Tag → revision at discovery, restored if the upgrade rolls back after moving tags."""
    next_batch: int
    """Index of the first batch the next run migrates."""
    uninstall_target_on_rollback: bool
    """Whether a rollback removes the target revision (False when it was adopted or kept)."""
    approved: list[str] = Field(default_factory=list)
    """Steps approved so far."""
    locked: bool = False
    """The upgrade holds the cluster lock (released when it ends cleanly)."""
    lock_holder: str | None = None
    """The holder written in the lock ConfigMap (None: a run continued by older code, whose
    holder was the workflow id)."""
