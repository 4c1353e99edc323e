"""An upgrade from a revisionless install, the most common starting point, end to end.

The sandbox's `revisionless` scenario renders the install from upstream's charts (its own
copy, not the product's): `istiod`, MWC `istio-sidecar-injector`, the base chart's
`istiod-default-validator` (failing closed once istiod serves), `istio-injection=enabled`
namespaces, Istio resources under validating admission.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.activities.kube_client import Kube
from istio_upgrade.client import start_removal
from istio_upgrade.devenv.bundles import crds_bundle
from istio_upgrade.models import AbortRequest, ClusterRef, UpgradeResult
from istio_upgrade.models.progress import Phase
from istio_upgrade.models.removal import RemoveRevisionSpec
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    istiod_deployments,
    pod_revisions,
    record_history,
    sandbox_kube,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow

MWC = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
VWC = ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
LABELLED = ["frontend", "catalog", "cart", "payments", "inventory"]


def admission_snapshot(kube: Kube) -> dict[str, Any]:
    """Every injector and validator configuration, without the fields istiod manages at
    run time (failurePolicy, caBundle), which istioctl keeps live too."""
    snapshot: dict[str, Any] = {}
    for kind in (MWC, VWC):
        for cfg in kube.list(*kind):
            hooks = copy.deepcopy(cfg.get("webhooks") or [])
            for hook in hooks:
                hook.pop("failurePolicy", None)
                hook.get("clientConfig", {}).pop("caBundle", None)
            labels = cfg["metadata"].get("labels") or {}
            snapshot[f"{kind[1]}/{cfg['metadata']['name']}"] = (labels, hooks)
    return snapshot


def virtual_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "frontend"},
        "spec": {"hosts": [f"{name}.example.com"], "http": [{"route": [
            {"destination": {"host": "web.frontend.svc.cluster.local"}}]}]},
    }  # fmt: skip


async def test_revisionless_upgrade_moves_injection_and_validation_to_the_new_revision(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory, "revisionless") as stack:
        kube = sandbox_kube(stack.sandbox)
        handle = await stack.start(fast_spec(stack.prometheus.url))
        result: UpgradeResult = await handle.result()
        assert result.outcome == "SUCCEEDED", result.summary
        assert result.source_revision == "default"
        assert "default" in result.tags_moved

        for namespace in LABELLED:
            revisions = pod_revisions(stack, namespace)
            assert revisions and set(revisions.values()) == {"1-31-0"}, (namespace, revisions)

        # Moving default deactivated the revisionless injector and re-pointed the validator.
        legacy = kube.get(*MWC, "istio-sidecar-injector")
        assert all(
            h["namespaceSelector"] == {"matchLabels": {"istio.io/deactivated": "never-match"}}
            for h in legacy["webhooks"]
        )
        validator = kube.get(*VWC, "istiod-default-validator")
        assert {h["clientConfig"]["service"]["name"] for h in validator["webhooks"]} == {
            "istiod-1-31-0"
        }

        # Workloads opted in per pod in unlabelled namespaces (the Helm gateway, reports)
        # migrated by their pod template's istio.io/rev; the gateway in the last batch.
        plan = result.plan
        assert plan is not None
        last = plan.batches[-1]
        assert last.gateway and last.namespaces == ["istio-ingress"], last
        assert [w.ref for w in last.workloads] == ["istio-ingress/Deployment/istio-ingressgateway"]
        for namespace, name in (("istio-ingress", "istio-ingressgateway"), ("reports", "reports")):
            assert set(pod_revisions(stack, namespace).values()) == {"1-31-0"}, namespace
            ns_labels = kube.get("v1", "Namespace", namespace)["metadata"].get("labels") or {}
            assert "istio.io/rev" not in ns_labels and "istio-injection" not in ns_labels
            template = kube.get("apps/v1", "Deployment", name, namespace)["spec"]["template"]
            assert template["metadata"]["labels"]["istio.io/rev"] == "1-31-0"
        # Only the bare pod keeps istiod; once it is gone, the revision is removed.
        assert not result.old_revision_removed
        assert any("--revision default" in w for w in result.warnings), result.warnings
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        cluster = ClusterRef(name="demo", context="sandbox")
        removal = await start_removal(
            client,
            RemoveRevisionSpec(cluster=cluster, revision="default"),
            task_queue=stack.task_queue,
        )
        removed = await removal.result()
        assert removed.outcome == "REMOVED", removed
        assert "istiod" not in istiod_deployments(stack)
        assert kube.get_or_none(*MWC, "istio-sidecar-injector") is None
        assert kube.get_or_none(*VWC, "istio-validator-istio-system") is None

        # After cleanup: a new istio-injection=enabled namespace gets the new proxy, and Istio
        # resources are still admitted (the default validator calls the new istiod).
        labels = {"istio-injection": "enabled"}
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "newcomer", "labels": labels},
            }
        )
        pod = kube.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": "newcomer", "labels": {"app": "hello"}},
            "spec": {"containers": [{"name": "app", "image": "example/hello:1"}]},
        })  # fmt: skip
        assert pod["metadata"]["annotations"]["istio.io/rev"] == "1-31-0"
        assert any(
            c["name"] == "istio-proxy" and c["image"].endswith(":1.31.0")
            for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
        ), pod["spec"]
        created = kube.create(virtual_service("after-cleanup"))
        assert created["metadata"]["name"] == "after-cleanup"


async def test_rollback_after_promote_restores_injector_tags_and_validator_exactly(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory, "revisionless") as stack:
        kube = sandbox_kube(stack.sandbox)
        before = admission_snapshot(kube)
        crds_before = {c["metadata"]["name"] for c in kube.list(*CRD)}
        spec = fast_spec(
            stack.prometheus.url,
            cleanup={"grace_seconds": 120},
            crds={"bundle_yaml": crds_bundle()},
        )
        handle = await stack.start(spec)
        await wait_progress(handle, lambda p: p.phase == Phase.GRACE, "the grace period", 180)
        moved = admission_snapshot(kube)
        assert moved != before, "promote changed the admission chain"
        assert "MutatingWebhookConfiguration/istio-revision-tag-default" in moved

        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="rollback drill", requested_by="sre")
        )
        cause = await failure(handle)
        assert cause.type == "Aborted", cause
        await record_history(handle, "revisionless-abort-after-promote-2")
        assert admission_snapshot(kube) == before
        for namespace in [*LABELLED, "istio-ingress", "reports"]:
            assert set(pod_revisions(stack, namespace).values()) == {"default"}, namespace
        for namespace, name in (("istio-ingress", "istio-ingressgateway"), ("reports", "reports")):
            template = kube.get("apps/v1", "Deployment", name, namespace)["spec"]["template"]
            assert "istio.io/rev" not in template["metadata"]["labels"], "pod label restored"
        assert "istiod-1-31-0" not in istiod_deployments(stack)
        kube.create(virtual_service("after-rollback"))
        # The CRD step ran first (applied by the upgrade's field manager) and the rollback
        # deleted none of them: deleting a CRD deletes every resource of its kind.
        crds = {c["metadata"]["name"]: c for c in kube.list(*CRD)}
        assert set(crds) >= crds_before
        managers = {
            m.get("manager")
            for m in crds["virtualservices.networking.istio.io"]["metadata"].get(
                "managedFields", []
            )
        }
        assert "istio-upgrade" in managers, managers
        assert kube.get_or_none("networking.istio.io/v1", "VirtualService", "web", "frontend")
