"""Removing an old revision after an upgrade kept it (``IstioRevisionRemoval``).

An upgrade keeps the old control plane when something still uses it, such as a bare pod it
cannot restart. Once the operator has dealt with that, this finishes the cleanup with the
same safety checks the upgrade runs before it uninstalls.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from istio_upgrade.models.spec import ClusterRef, check_dns1123

RemovalOutcome = Literal["REMOVED", "NOT_INSTALLED", "IN_USE", "DRY_RUN"]


class RemoveRevisionSpec(BaseModel):
    """The single input of ``IstioRevisionRemoval``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    cluster: ClusterRef
    """The cluster; ``cluster.prometheus_url`` adds the check that no proxy is still
    connected to the revision's istiod (``pilot_xds``)."""
    revision: str
    """The revision to remove, e.g. ``1-30-3``; ``default`` is a revisionless install
    (``istiod``, ``istio-sidecar-injector``), whose objects carry ``istio.io/rev=default``."""
    dry_run: bool = False
    """Only check whether the revision could be removed; change nothing."""

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        return check_dns1123(value, "revision")


def removal_workflow_id(spec: RemoveRevisionSpec) -> str:
    """``istio-remove-revision.<cluster>.<revision>``, ``….dry-run`` for a dry run.

    One removal per cluster and revision; a dry run has an id of its own so that a real
    removal never attaches to one (or the other way round).
    """
    base = f"istio-remove-revision.{spec.cluster.name}.{spec.revision}"
    return f"{base}.dry-run" if spec.dry_run else base


class RemovalResult(BaseModel):
    """What a removal did, or why it refused."""

    cluster: str
    revision: str
    outcome: RemovalOutcome
    blockers: list[str] = Field(default_factory=list)
    """What still uses the revision (pods, namespace labels, tags, connected proxies)."""
    deleted: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    """Objects of the revision that were already gone."""
    warnings: list[str] = Field(default_factory=list)
    summary: str = ""
