"""The shapes real meshes have: Helm and Gateway API gateways, a waypoint, an OnDelete
StatefulSet, a hostNetwork DaemonSet, an Argo Rollout, ambient mode, a GitOps controller
reverting labels — each against the sandbox's `shapes` and `demo` scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from istio_sandbox.scenario import SCENARIO_DIR
from istio_upgrade.activities.kube_client import Kube
from istio_upgrade.models import AbortRequest, UpgradeResult
from istio_upgrade.models.progress import Phase
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    failure,
    fast_spec,
    pod_revisions,
    record_history,
    sandbox_kube,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow

GATEWAY = ("gateway.networking.k8s.io/v1", "Gateway")
# Namespace → the Deployment whose pods run the gateway proxy.
GATEWAYS = {
    "istio-ingress": "istio-ingressgateway",
    "edge": "public-istio",
    "orders": "waypoint",
}


def without_ambient(tmp_path: Path) -> Path:
    """`shapes` without ztunnel and istio-cni: the waypoint stays, its namespace plain."""
    doc = yaml.safe_load((SCENARIO_DIR / "shapes.yaml").read_text())
    doc.pop("ambient", None)
    doc["name"] = doc["cluster_name"] = "shapes-sidecar"
    for ns in doc["namespaces"]:
        if ns["name"] == "orders":
            ns["labels"] = {}
    path = tmp_path / "shapes-sidecar.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rendered_by(kube: Kube, namespace: str, deployment: str) -> str | None:
    meta = kube.get("apps/v1", "Deployment", deployment, namespace)["spec"]["template"]["metadata"]
    return (meta.get("annotations") or {}).get("istio.io/rev") or meta.get("labels", {}).get(
        "istio.io/rev"
    )


def gateway_labels(kube: Kube) -> dict[str, str | None]:
    return {
        f"{g['metadata']['namespace']}/{g['metadata']['name']}": g["metadata"]
        .get("labels", {})
        .get("istio.io/rev")
        for g in kube.list(*GATEWAY)
    }


async def test_gateways_on_delete_host_network_and_argo_pods_in_a_healthy_upgrade(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    scenario = without_ambient(tmp_path)
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory, scenario) as stack:
        kube = sandbox_kube(stack.sandbox)
        labels_before = gateway_labels(kube)
        handle = await stack.start(fast_spec(stack.prometheus.url, migration={"canary": []}))
        result: UpgradeResult = await handle.result()
        assert result.outcome == "SUCCEEDED", result.summary
        await record_history(handle, "shapes-upgrade-2")

        plan = result.plan
        assert plan is not None
        last = plan.batches[-1]
        assert last.gateway and set(last.namespaces) == set(GATEWAYS), last
        assert {w.ref for w in last.workloads} == {
            "istio-ingress/Deployment/istio-ingressgateway",
            "edge/Gateway/public",
            "orders/Gateway/waypoint",
        }
        for namespace, deployment in GATEWAYS.items():
            assert rendered_by(kube, namespace, deployment) == "1-31-0" or (
                namespace == "istio-ingress"
            )
            pods = {
                n: r for n, r in pod_revisions(stack, namespace).items() if n.startswith(deployment)
            }
            assert pods and set(pods.values()) == {"1-31-0"}, (namespace, pods)
        # The Gateways follow the default tag again, as before (no restart: same owner).
        assert gateway_labels(kube) == labels_before

        # OnDelete StatefulSet: its pods were replaced one by one.
        assert set(pod_revisions(stack, "ledger").values()) == {"1-31-0"}
        # The hostNetwork DaemonSet and the Argo Rollout did not roll the upgrade back.
        warnings = "\n".join(result.warnings)
        assert "hostNetwork" in warnings and "monitoring/node-exporter" in warnings
        assert "owned by Rollout/catalog" in warnings


async def test_rollback_restores_gateway_labels_and_their_proxies(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    scenario = without_ambient(tmp_path)
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory, scenario) as stack:
        kube = sandbox_kube(stack.sandbox)
        labels_before = gateway_labels(kube)
        spec = fast_spec(
            stack.prometheus.url, migration={"canary": []}, cleanup={"grace_seconds": 120}
        )
        handle = await stack.start(spec)
        await wait_progress(handle, lambda p: p.phase == Phase.GRACE, "the grace period", 240)
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="drill", requested_by="sre")
        )
        assert (await failure(handle)).type == "Aborted"
        assert gateway_labels(kube) == labels_before
        for namespace, deployment in GATEWAYS.items():
            if namespace != "istio-ingress":
                assert rendered_by(kube, namespace, deployment) == "1-30-3", namespace
            pods = {
                n: r for n, r in pod_revisions(stack, namespace).items() if n.startswith(deployment)
            }
            assert pods and set(pods.values()) == {"1-30-3"}, (namespace, pods)
        template = kube.get("apps/v1", "Deployment", "istio-ingressgateway", "istio-ingress")
        assert "istio.io/rev" not in template["spec"]["template"]["metadata"]["labels"]


async def test_ambient_is_refused_before_any_write_naming_it(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory, "shapes") as stack:
        stack.sandbox.reset_stats()
        cause = await failure(await stack.start(fast_spec(stack.prometheus.url)))
        assert cause.type == "PrecheckFailed"
        assert "ambient" in cause.message and "orders" in cause.message
        assert "istio-system/ztunnel" in cause.message
        assert stack.sandbox.stats()["writes"] == 0


async def test_a_reverted_label_holds_the_upgrade_naming_the_namespace(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory) as stack:
        kube = sandbox_kube(stack.sandbox)
        spec = fast_spec(stack.prometheus.url, gate={"soak_seconds": 8})
        handle = await stack.start(spec)
        await wait_progress(
            handle,
            lambda p: p.phase == Phase.SOAKING and p.current_batch == 0,
            "the canary's soak",
            120,
        )
        # What a GitOps self-heal does (the sandbox's `labels` fault does the same on a
        # timer): frontend gets the labels of its Git source back while its batch soaks.
        kube.merge_patch(
            "v1",
            "Namespace",
            "frontend",
            {"metadata": {"labels": {"istio-injection": "enabled", "istio.io/rev": None}}},
        )
        progress = await wait_progress(
            handle,
            lambda p: p.paused and "frontend" in (p.waiting_for or ""),
            "the drift hold",
            120,
        )
        assert "istio-injection=enabled" in (progress.waiting_for or "")
        assert progress.current_batch == 0
        # The operator sets the label as the upgrade needs it and resumes: it goes on.
        kube.merge_patch(
            "v1",
            "Namespace",
            "frontend",
            {"metadata": {"labels": {"istio-injection": None, "istio.io/rev": "1-31-0"}}},
        )
        await handle.execute_update(IstioCanaryUpgrade.resume)
        await wait_progress(handle, lambda p: (p.current_batch or 0) >= 1, "the next batch", 120)
        await handle.execute_update(
            IstioCanaryUpgrade.abort, AbortRequest(reason="done", requested_by="sre")
        )
        assert (await failure(handle)).type == "Aborted"
