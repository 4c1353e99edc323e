"""Installer strategy ``sail`` end to end against the sandbox's Sail Operator.

The ``sail`` scenario runs an ``Istio`` ``default`` in ``RevisionBased`` mode at v1.30.3
(``IstioRevision`` ``default-v1-30-3``) with the ``IstioRevisionTag`` ``default`` targeting the
``Istio``. An upgrade sets the ``Istio`` to v1.31.0, migrates the namespaces to
``default-v1-31-0`` in gated batches, gives the tag back to the ``Istio`` at promote and lets
the old revision go; a canary that burns its error budget rolls back to exactly the
resources as they were.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import UpgradeSpec
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    FAST_GATE,
    Stack,
    failure,
    lock_holder,
    namespace_labels,
    pod_revisions,
    record_history,
    upgrade_stack,
)

pytestmark = pytest.mark.slow

SAIL = "/apis/sailoperator.io/v1"
OLD, NEW = "default-v1-30-3", "default-v1-31-0"
MESH = [
    "istio-ingress", "frontend", "catalog", "cart", "checkout", "payments", "accounts",
    "inventory", "reviews", "search", "notifications", "telemetry",
]  # fmt: skip
"""The scenario's namespaces with long-running injected pods (``legacy`` is outside the mesh;
``batch`` holds a Job and a bare pod, checked on their own)."""


def sail_spec(
    prometheus_url: str, prune: str, istio: str = "default", **overrides: Any
) -> UpgradeSpec:
    """A fast-gated ``sail`` upgrade to 1.31.0: canary ``frontend``, then the rest."""
    doc: dict[str, Any] = {
        "installer": {"strategy": "sail", "sail": {"istio": istio, "prune": prune}},
        "cluster": {"name": "sail", "context": "sandbox", "prometheus_url": prometheus_url},
        "target": {"version": "1.31.0"},
        "migration": {
            "canary": ["frontend"],
            "growth_factor": 20,
            "max_batch_size": 20,
            "rollout_timeout_seconds": 30,
        },
        "gate": dict(FAST_GATE),
        "cleanup": {"grace_seconds": 2},
    }
    doc.update(overrides)
    return UpgradeSpec.model_validate(doc)


def scenario(tmp_path: Path, name: str, **top: Any) -> Path:
    """A scenario file extending ``sail`` with the given top-level keys."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": "sail", "name": name, **top}))
    return path


def istio(stack: Stack) -> dict[str, Any]:
    found: dict[str, Any] = stack.get(f"{SAIL}/istios/default")
    return found


def revisions(stack: Stack) -> dict[str, dict[str, Any]]:
    """IstioRevision name → the object."""
    return {r["metadata"]["name"]: r for r in stack.objects(f"{SAIL}/istiorevisions")}


def tags(stack: Stack) -> dict[str, tuple[dict[str, str], str | None]]:
    """IstioRevisionTag name → (spec.targetRef, status.istioRevision)."""
    return {
        t["metadata"]["name"]: (
            t["spec"]["targetRef"],
            (t.get("status") or {}).get("istioRevision"),
        )
        for t in stack.objects(f"{SAIL}/istiorevisiontags")
    }


def ready(revision: dict[str, Any]) -> bool:
    conditions = (revision.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def mesh_pods(stack: Stack) -> dict[str, set[str | None]]:
    """Namespace → the revisions its live injected pods were injected by (every namespace of
    the mesh has some: the test fails on an empty one)."""
    found: dict[str, set[str | None]] = {}
    for ns in MESH:
        # batch's legacy-agent opts out of injection: no istio.io/rev annotation.
        found[ns] = {r for n, r in pod_revisions(stack, ns).items() if "legacy" not in n}
    return found


async def settled(stack: Stack, check: Any, what: str, seconds: float = 60) -> None:
    """Until ``check()`` holds (the operator's controllers reconcile asynchronously)."""
    for _ in range(int(seconds / 0.2)):
        if check():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def assert_initial(stack: Stack) -> dict[str, Any]:
    """The scenario's Sail resources as they start; returns the Istio's spec."""
    spec = istio(stack)["spec"]
    assert spec["version"] == "v1.30.3"
    assert spec["updateStrategy"]["type"] == "RevisionBased"
    assert set(revisions(stack)) == {OLD} and ready(revisions(stack)[OLD])
    assert tags(stack) == {"default": ({"kind": "Istio", "name": "default"}, OLD)}
    assert all(r == {OLD} for r in mesh_pods(stack).values()), mesh_pods(stack)
    return dict(spec)


@pytest.mark.parametrize("prune", ["sail", "delete"])
async def test_sail_upgrade_moves_the_istio_its_tags_and_pods(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
    prune: str,
) -> None:
    # A short grace period, so that the operator's pruning is seen within the test; an
    # IstioCNI, upgraded with the control plane.
    path = scenario(
        tmp_path,
        "sail-upgrade",
        sail={
            "istio": "default",
            "version": "v1.30.3",
            "update_strategy": "RevisionBased",
            "tags": ["default"],
            "inactive_revision_deletion_grace_period_s": 3,
            "cni": True,
        },
    )
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, path
    ) as stack:
        # The bare pod would (rightly) keep the old revision in use; its owner removes it.
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        before_spec = assert_initial(stack)
        before_labels = namespace_labels(stack)
        cni = stack.get(f"{SAIL}/istiocnis/default")
        assert cni["spec"]["version"] == "v1.30.3"
        handle = await stack.start(sail_spec(stack.prometheus.url, prune))
        result = await handle.result()
        await record_history(handle, f"sail-upgrade-{prune}-6")
        assert result.outcome == "SUCCEEDED", result.summary
        assert result.target_revision == NEW and result.source_revision == OLD
        assert result.old_revision_removed, result.warnings
        # Namespaces keep their label form: the tag's (istio-injection=enabled,
        # istio.io/rev=default) follow the tag; one pinned to the old revision is pinned to
        # the new one.
        after_labels = namespace_labels(stack)
        for ns, labels in before_labels.items():
            if labels.get("istio.io/rev") == OLD:
                assert after_labels[ns] == {**labels, "istio.io/rev": NEW}, ns
            else:
                assert after_labels[ns] == labels, ns

        after = istio(stack)
        assert after["spec"]["version"] == "v1.31.0"
        assert {k: v for k, v in after["spec"].items() if k != "version"} == {
            k: v for k, v in before_spec.items() if k != "version"
        }
        assert "istio-upgrade.io/sail-before" not in (after["metadata"].get("annotations") or {})
        # The tag follows the Istio again, whose active revision is now the new one.
        await settled(
            stack,
            lambda: tags(stack) == {"default": ({"kind": "Istio", "name": "default"}, NEW)},
            "the tag on the new revision",
        )
        assert after["status"]["activeRevisionName"] == NEW
        # The old revision is gone (deleted by the upgrade, or pruned by the operator before
        # the upgrade ended), the new one Ready.
        left = revisions(stack)
        assert set(left) == {NEW} and ready(left[NEW]), left
        assert all(r == {NEW} for r in mesh_pods(stack).values()), mesh_pods(stack)
        assert stack.get(f"{SAIL}/istiocnis/default")["spec"]["version"] == "v1.31.0"
        istiods = {
            d["metadata"]["name"]
            for d in stack.objects("/apis/apps/v1/namespaces/istio-system/deployments")
        }
        assert istiods == {f"istiod-{NEW}"}
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.tags_moved == ["default"]


async def test_sail_bad_canary_rolls_back_the_istio_and_its_tags(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    # Pods the new revision injects in checkout answer 5% 503: the canary burns its budget.
    path = scenario(
        tmp_path,
        "sail-bad-canary",
        faults={
            "traffic": [
                {"namespaces": ["checkout"], "revision": NEW, "error_ratio": 0.05,
                 "error_code": 503}
            ]
        },
    )  # fmt: skip
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, path
    ) as stack:
        before_spec = assert_initial(stack)
        before_istio = istio(stack)
        before_labels = namespace_labels(stack)
        before_tags = tags(stack)
        gate = {
            **FAST_GATE,
            "slos": [{"name": "availability", "objective": 0.99, "burn_rate_threshold": 2}],
            "soak_seconds": 10,
            "max_soak_seconds": 20,
            "on_inconclusive": "rollback",
        }
        spec = sail_spec(
            stack.prometheus.url,
            "delete",
            migration={"canary": ["checkout", "cart"], "rollout_timeout_seconds": 30},
            gate=gate,
        )
        handle = await stack.start(spec)
        cause = await failure(handle)
        await record_history(handle, "sail-bad-canary-rollback-6")
        assert cause.type == "GateFailed", cause.message
        assert "checkout" in cause.message

        after = istio(stack)
        assert after["spec"] == before_spec
        assert (after["metadata"].get("annotations") or {}) == (
            before_istio["metadata"].get("annotations") or {}
        )
        await settled(stack, lambda: tags(stack) == before_tags, "the tags as they were")
        assert namespace_labels(stack) == before_labels
        assert all(r == {OLD} for r in mesh_pods(stack).values()), mesh_pods(stack)
        assert pod_revisions(stack, "batch")["debug-shell"] == OLD
        # prune: delete — the new revision is deleted by the rollback itself.
        assert set(revisions(stack)) == {OLD}
        await settled(
            stack,
            lambda: istio(stack)["status"].get("activeRevisionName") == OLD,
            "the Istio's active revision back to the old one",
        )
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.phase.value == "ROLLED_BACK"
        assert progress.batches[0].status == "rolled_back"


async def test_sail_refuses_an_in_place_or_missing_istio_before_any_write(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "sail-in-place",
        sail={"istio": "mesh", "version": "v1.30.3", "update_strategy": "InPlace", "tags": []},
        namespaces=[
            {
                "name": "shop",
                "labels": {"istio.io/rev": "mesh"},
                "workloads": [{"name": "web", "replicas": 1, "rps": 10}],
            }
        ],
    )
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, path
    ) as stack:
        before = stack.get(f"{SAIL}/istios/mesh")
        for name, says in (
            ("mesh", "has updateStrategy.type InPlace"),
            ("default", "Istio/default (sailoperator.io/v1) does not exist"),
        ):
            spec = sail_spec(stack.prometheus.url, "sail", name, migration={})
            cause = await failure(await stack.start(spec))
            assert cause.type == "PrecheckFailed", cause.message
            assert f"installer.sail.istio: Istio/{name}" in cause.message
            assert says in cause.message, cause.message
        after = stack.get(f"{SAIL}/istios/mesh")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert set(revisions(stack)) == {"mesh"} and not tags(stack)
        assert lock_holder(stack) is None
