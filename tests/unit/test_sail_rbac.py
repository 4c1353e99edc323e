"""``deploy/components/installer-sail`` grants exactly what the ``sail`` strategy asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from istio_upgrade.models.permissions import (
    COMPONENT_FILES,
    SAIL_GROUP,
    AccessNeed,
    permissions_input,
    sail_needs,
)
from istio_upgrade.models.spec import UpgradeSpec
from tests.unit.test_deploy_rbac import rule_allows, worker_grants

ROOT = Path(__file__).parents[2]
COMPONENT = ROOT / "deploy" / "components" / "installer-sail"


def _docs() -> list[dict[str, Any]]:
    assert (COMPONENT / "kustomization.yaml").is_file()
    return [d for d in yaml.safe_load_all((COMPONENT / "rbac.yaml").read_text()) if d]


def _needs() -> list[AccessNeed]:
    spec = UpgradeSpec.model_validate(
        {
            "cluster": {"name": "c1"},
            "target": {"version": "1.31.0"},
            "installer": {"strategy": "sail", "sail": {"prune": "delete"}},
        }
    )
    return list(sail_needs(permissions_input(spec, None)))


def test_every_sail_need_is_granted_by_the_component() -> None:
    grants = worker_grants(_docs())
    assert grants
    for need in _needs():
        assert need.component == "installer-sail"
        assert any(
            rule_allows(g.rule, need.verb, need.group, need.resource, need.subresource, need.name)
            for g in grants
        ), need
    assert COMPONENT_FILES["installer-sail"] == "deploy/components/installer-sail/rbac.yaml"


def test_the_component_grants_nothing_the_strategy_does_not_send() -> None:
    asked = {(n.verb, n.group, n.resource) for n in _needs()}
    for grant in worker_grants(_docs()):
        rule = grant.rule
        assert rule["apiGroups"] == [SAIL_GROUP], rule
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                assert (verb, SAIL_GROUP, resource) in asked, (verb, resource)
