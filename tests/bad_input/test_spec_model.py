"""Entry point 1: ``UpgradeSpec`` itself refuses every case, naming the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from istio_upgrade.models import UpgradeSpec
from tests.bad_input.conftest import assert_explains
from tests.bad_input.corpus import BASE_SPEC, NO_CANARY, SPEC_CASES, Case, names, param, spec

pytestmark = pytest.mark.bad_input


def test_the_base_of_every_case_is_a_valid_spec() -> None:
    spec = UpgradeSpec.model_validate(BASE_SPEC)
    assert spec.target_revision == "1-31-0" and not spec.dry_run


@pytest.mark.parametrize("case", [param(c) for c in SPEC_CASES])
def test_the_model_refuses(case: Case) -> None:
    with pytest.raises(ValidationError) as info:
        UpgradeSpec.model_validate(case.doc)
    assert_explains(str(info.value), case)


WEEK = 7 * 24 * 3600
EDGES = {
    "revision-56": [("target.revision", "r" * 56)],
    "tag-43": [("promote.tags", ["t" * 43])],
    "namespace-63": [("migration.include", ["n" * 63])],
    "cluster-63": [("cluster.name", "c" * 63)],
    "listed-5000": [("migration.exclude", names(4_999))],
    "batch-5000": [NO_CANARY, ("migration.batches", [names(5_000)])],
    "durations-a-week": [
        ("gate.soak_seconds", WEEK),
        ("gate.max_soak_seconds", WEEK),
        ("gate.warmup_seconds", WEEK),
        ("cleanup.grace_seconds", WEEK),
        ("migration.rollout_timeout_seconds", WEEK),
    ],
    "interval-1s": [("gate.interval_seconds", 1)],
    "confirmations-waiting-for-a-person": [
        ("gate.confirmations", 5),
        ("gate.on_inconclusive", "wait_for_approval"),
    ],
    "hub-with-port": [("target.hub", "localhost:5000/mirror/istio")],
    "prometheus-path-prefix": [("cluster.prometheus_url", "https://mimir.example.com/prometheus")],
    "context-eks-arn": [("cluster.context", "arn:aws:eks:eu-west-1:123456789012:cluster/prod")],
    "context-with-space": [("cluster.context", "prod admin")],
    "selector-prefixed-key": [("migration.selector", "istio.io/rev in (1-30-3,canary),!legacy")],
    "prerelease-version": [("target.version", "1.31.0-beta.1")],
    "bundle-path-relative": [("installer", {"bundle_path": "istiod-1-31-0.yaml"})],
    "configmap-dotted": [
        ("installer", {"bundle_configmap": {"namespace": "istio-system",
                                            "name": "istiod-1.31.0", "key": "bundle.yaml"}})
    ],
    "slo-labels": [("gate.slos[0].labels", {"team": "mesh", "tier_1": "yes"})],
}  # fmt: skip


@pytest.mark.parametrize("edits", EDGES.values(), ids=EDGES.keys())
def test_the_edges_of_each_rule_are_accepted(edits: list[tuple[str, object]]) -> None:
    """The bounds refuse what is wrong, not what is unusual."""
    UpgradeSpec.model_validate(spec(*edits))
