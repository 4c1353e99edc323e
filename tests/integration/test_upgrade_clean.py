"""A clean canary upgrade of the demo cluster, against real Temporal, Prometheus and the sandbox."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import UpgradeResult
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    fast_spec,
    istiod_deployments,
    lock_holder,
    namespace_labels,
    pod_revisions,
    record_history,
    upgrade_stack,
)

pytestmark = pytest.mark.slow


def label_columns(stack: Any) -> dict[str, tuple[str, str]]:
    """Namespace → (ISTIO-INJECTION, REV) as ``kubectl get ns -L istio-injection,istio.io/rev``
    prints them (blank columns read as ``""``)."""
    out = subprocess.run(
        ["kubectl", "--kubeconfig", stack.kubeconfig, "get", "ns",
         "-L", "istio-injection,istio.io/rev"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.splitlines()  # fmt: skip
    header = out[0]
    injection_at, rev_at = header.index("ISTIO-INJECTION"), header.index("REV")
    return {
        line.split()[0]: (line[injection_at:rev_at].strip(), line[rev_at:].strip())
        for line in out[1:]
    }


async def test_clean_upgrade_moves_everything_and_removes_old_revision(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(temporal_local.client, sandbox_factory, prometheus_factory) as stack:
        # The bare pod would (rightly) keep the old revision installed; its owner removes it.
        assert stack.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
        spec = fast_spec(stack.prometheus.url)
        before = namespace_labels(stack)
        kubectl_before = label_columns(stack)
        stack.sandbox.reset_stats()
        handle = await stack.start(spec)
        result: UpgradeResult = await handle.result()
        await record_history(handle, "clean-upgrade-2")
        await record_history(handle, "clean-upgrade-3")
        await record_history(handle, "clean-upgrade-4")
        await record_history(handle, "clean-upgrade-5")

        assert result.outcome == "SUCCEEDED", result.summary
        assert result.old_revision_removed, result.warnings
        assert lock_holder(stack) is None  # the cluster is free for the next upgrade
        plan = result.plan
        assert plan is not None
        assert plan.batches[0].namespaces == ["frontend"]
        assert plan.batches[-1].gateway and plan.batches[-1].namespaces == ["istio-ingress"]
        migrated = 0
        for ns in plan.namespaces:
            revisions = pod_revisions(stack, ns)
            # legacy-agent opted out of injection; the Job pod has completed.
            injectable = {n: r for n, r in revisions.items() if not n.startswith("legacy-agent")}
            assert set(injectable.values()) <= {"1-31-0"}, (ns, revisions)
            migrated += len(injectable)
        assert migrated >= 20
        # Every namespace ends in the label form it started with: istio-injection=enabled and
        # istio.io/rev=<tag> come back once the tags point at 1-31-0 (no second restart: the
        # revision is the same); one pinned to the old revision is pinned to the new one.
        after = namespace_labels(stack)
        for ns, labels in before.items():
            if labels.get("istio.io/rev") == "1-30-3":
                assert after[ns] == {**labels, "istio.io/rev": "1-31-0"}, ns
            else:
                assert after[ns] == labels, ns
        assert any(labels.get("istio-injection") == "enabled" for labels in after.values())
        assert any(labels.get("istio.io/rev") in {"default", "canary"} for labels in after.values())
        # As an SRE checks it: `kubectl get ns -L istio-injection,istio.io/rev`.
        kubectl_after = label_columns(stack)
        for ns, columns in kubectl_before.items():
            expected = ("", "1-31-0") if columns[1] == "1-30-3" else columns
            assert kubectl_after[ns] == expected, (ns, columns, kubectl_after[ns])
        replicasets = stack.objects("/apis/apps/v1/namespaces/frontend/replicasets")
        assert len(replicasets) == 2, "restarted once by its batch, not again by the relabel"
        stats = stack.sandbox.stats()
        per_namespace = stats["total"] / len(plan.namespaces)
        print(f"API requests: {stats['total']} ({per_namespace:.1f} per namespace)")
        # Paged lists and label selectors, no per-pod GETs: polling dominates the count.
        assert per_namespace < 40, stats
        webhooks = stack.objects(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        )
        tags = {
            w["metadata"]["labels"]["istio.io/tag"]: w["metadata"]["labels"]["istio.io/rev"]
            for w in webhooks
            if "istio.io/tag" in w["metadata"].get("labels", {})
        }
        assert tags == {"default": "1-31-0", "canary": "1-31-0"}
        assert istiod_deployments(stack) == {"istiod-1-31-0"}
        # Every write left an Event on its object naming the upgrade: who changed it and why.
        events = stack.objects("/api/v1/namespaces/frontend/events")
        ours = [e for e in events if e.get("source", {}).get("component") == "istio-upgrade"]
        reasons = {(e["involvedObject"]["kind"], e["reason"]) for e in ours}
        assert {("Namespace", "InjectionRelabeled"), ("Deployment", "Restarted")} <= reasons
        assert all(handle.id in e["message"] for e in ours), ours
        assert all("batch 0" in e["message"] for e in ours if e["reason"] == "Restarted"), ours
        web = stack.get("/apis/apps/v1/namespaces/frontend/deployments/web")
        assert any(e["involvedObject"].get("uid") == web["metadata"]["uid"] for e in ours)
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert all(b.status == "passed" for b in progress.batches)
        assert all(b.gate_results for b in progress.batches)
