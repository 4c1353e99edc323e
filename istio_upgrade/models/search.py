"""Typed search attributes that make upgrades filterable in the Temporal Web UI and CLI.

A namespace must register them before a workflow may set them (``temporal operator
search-attribute create``, see docs/operations.md; the local dev server registers them at
start). Starters set them with ``search_attributes_for(spec)``; the workflow updates the phase
and, at the end, the outcome only when the starter set them — proof that the server knows
them, so a server without them still runs upgrades.

Examples of visibility queries (Web UI search box, ``temporal workflow list --query``)::

    IstioCluster = 'prod-eu' AND ExecutionStatus = 'Running'
    IstioUpgradePhase = 'WAITING_APPROVAL'
    IstioUpgradeOutcome = 'ROLLED_BACK' AND IstioTargetRevision = '1-31-0'
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from istio_upgrade.models.spec import UpgradeSpec

CLUSTER = SearchAttributeKey.for_keyword("IstioCluster")
"""The cluster being upgraded."""
TARGET_REVISION = SearchAttributeKey.for_keyword("IstioTargetRevision")
"""The revision being installed."""
PHASE = SearchAttributeKey.for_keyword("IstioUpgradePhase")
"""The upgrade's current phase (``Phase`` value)."""
OUTCOME = SearchAttributeKey.for_keyword("IstioUpgradeOutcome")
"""How the upgrade ended (``SUCCEEDED``, ``ROLLED_BACK``, ``FAILED``, ``DRY_RUN``); unset while
it runs."""

FLEET = SearchAttributeKey.for_keyword("IstioFleet")
"""The fleet a rollout (``FleetRollout``) rolls out, also set on the upgrades it starts:
``IstioFleet = 'prod'`` lists the fleet and its clusters' upgrades. A fleet sets
``IstioTargetRevision``, ``IstioUpgradePhase`` (its own phase) and ``IstioUpgradeOutcome`` too."""

ALL_SEARCH_ATTRIBUTES = (CLUSTER, TARGET_REVISION, PHASE, OUTCOME, FLEET)
"""Every attribute a namespace must register (all of type Keyword)."""


def search_attributes_for(spec: UpgradeSpec) -> TypedSearchAttributes:
    """The attributes a starter sets when it starts the upgrade of ``spec``."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CLUSTER, spec.cluster.name),
            SearchAttributePair(TARGET_REVISION, spec.target_revision),
            SearchAttributePair(PHASE, "PENDING"),
        ]
    )
