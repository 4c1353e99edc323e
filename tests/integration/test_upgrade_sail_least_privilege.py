"""The ``sail`` strategy with exactly ``deploy/rbac.yaml`` + ``components/installer-sail``.

The sandbox enforces RBAC; the worker runs as its ServiceAccount with the migration base and
the Sail component (not ``installer-manifests``). A Sail upgrade succeeds with those rights
alone, every right the component grants for it is exercised, and without ``patch`` on
``istios`` the precheck refuses the upgrade, naming the right and the component's file,
before its first write.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import UpgradeResult
from tests.integration.test_least_privilege import as_worker, worker_requests
from tests.integration.test_upgrade_sail import OLD, SAIL, sail_spec
from tests.integration.upgrade_stack import failure
from tests.unit.test_deploy_rbac import DEPLOY, kustomize

pytestmark = pytest.mark.slow

SAIL_RBAC = DEPLOY / "components" / "installer-sail" / "rbac.yaml"
SAIL_ROLE = "istio-upgrade-installer-sail"


def sail_deploy() -> list[dict[str, Any]]:
    """``deploy/`` with the Sail component in place of the manifests installer's."""
    base = [
        d for d in kustomize() if (d.get("metadata") or {}).get("name") != "istio-upgrade-installer"
    ]
    assert base, "deploy/ renders the migration base"
    return base + [d for d in yaml.safe_load_all(SAIL_RBAC.read_text()) if d]


def without(docs: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(docs)
    for doc in out:
        if (
            doc["kind"] != "ClusterRole"
            or doc["metadata"]["name"] != "istio-upgrade-installer-sail"
        ):
            continue
        for rule in doc["rules"]:
            if resource in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


async def test_sail_upgrade_runs_with_the_sail_component_alone(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    async with as_worker(
        temporal_local.client, sandbox_factory, prometheus_factory, "sail", tmp_path, sail_deploy()
    ) as stack:
        assert stack.prometheus is not None
        spec = sail_spec(stack.prometheus.url, "delete")
        handle = await stack.start(spec)
        result: UpgradeResult = await handle.result()
        assert result.outcome == "SUCCEEDED", result.summary
        assert result.precheck is not None
        assert not [f for f in result.precheck.findings if f.code == "PERMISSION_MISSING"]
        sent = {
            (e["verb"], e["resource"])
            for e in worker_requests(stack)
            if e["apiGroup"] == "sailoperator.io" and e["code"] < 400
        }
        # The Sail steps spoke to the operator's resources with the component's rights.
        for right in (
            ("patch", "istios"),
            ("get", "istiorevisions"),
            ("patch", "istiorevisiontags"),
        ):
            assert right in sent, (right, sorted(sent))
        assert stack.get(f"{SAIL}/istios/default")["spec"]["version"] == "v1.31.0"
        # The bare pod in batch keeps the old revision in use: kept, with the command to run.
        assert not result.old_revision_removed
        assert any(f"kubectl delete istiorevision {OLD}" in w for w in result.warnings)


async def test_sail_precheck_names_a_missing_sail_right(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    docs = without(sail_deploy(), "istios", "patch")
    async with as_worker(
        temporal_local.client, sandbox_factory, prometheus_factory, "sail", tmp_path, docs
    ) as stack:
        assert stack.prometheus is not None
        before = stack.get(f"{SAIL}/istios/default")
        cause = await failure(await stack.start(sail_spec(stack.prometheus.url, "sail")))
        assert cause.type == "PrecheckFailed", cause.message
        assert "may not patch sailoperator.io/istios" in cause.message, cause.message
        assert "deploy/components/installer-sail/rbac.yaml" in cause.message, cause.message
        after = stack.get(f"{SAIL}/istios/default")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
