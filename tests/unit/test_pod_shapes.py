"""Pods real clusters have: hostNetwork, unknown controllers, OnDelete, paused rollouts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istio_upgrade.activities.discovery import pod_owner, replicaset_owners
from istio_upgrade.activities.migration import rollout_pending, verify
from istio_upgrade.planning import plan_upgrade
from tests.unit.plan_fixtures import ENABLED, deployment, inventory, spec


def pod(
    name: str, revision: str | None, *, owner: tuple[str, str] | None = None, **spec_: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": name}}
    if revision:
        meta["annotations"] = {"istio.io/rev": revision}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {
        "metadata": meta,
        "spec": spec_,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


class FakeKube:
    cluster = "c"

    def __init__(self, pods: list[dict[str, Any]], replicasets: list[dict[str, Any]]) -> None:
        self.items = {"Pod": pods, "ReplicaSet": replicasets}

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **_: Any
    ) -> Iterator[dict[str, Any]]:
        yield from self.items.get(kind, [])


ROLLOUT_RS = {
    "metadata": {
        "name": "checkout-7d9",
        "namespace": "shop",
        "ownerReferences": [{"kind": "Rollout", "name": "checkout", "controller": True}],
    }
}


def test_a_replicaset_of_an_argo_rollout_is_owned_by_the_rollout() -> None:
    owners = replicaset_owners([ROLLOUT_RS])
    assert owners[("shop", "checkout-7d9")] == ("Rollout", "checkout")
    assert pod_owner(pod("checkout-7d9-x", None, owner=("ReplicaSet", "checkout-7d9")), owners) == (
        "Rollout",
        "checkout",
    )
    operator_pod = pod("db-0", None, owner=("CassandraDatacenter", "dc1"))
    assert pod_owner(operator_pod, {}) == ("CassandraDatacenter", "dc1")


def test_verification_skips_host_network_and_reports_unmanaged_pods() -> None:
    kube = FakeKube(
        [
            pod("agent-abc", None, owner=("DaemonSet", "agent"), hostNetwork=True),
            pod("checkout-7d9-x", "1-30-3", owner=("ReplicaSet", "checkout-7d9")),
            pod("web-1", "1-31-0", owner=("ReplicaSet", "web-5f")),
        ],
        [ROLLOUT_RS],
    )
    report = verify(kube, ["shop"], "1-31-0")  # type: ignore[arg-type]
    assert report.ok, report
    assert report.host_network_skipped == ["shop/agent-abc"]
    assert len(report.unmanaged) == 1 and "owned by Rollout/checkout" in report.unmanaged[0]
    strict = verify(kube, ["shop"], "1-31-0", "fail")  # type: ignore[arg-type]
    assert not strict.ok
    assert "does not restart" in strict.stragglers[0].reason


def on_delete(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": "shop", "generation": 2},
        "spec": {"replicas": 2, "updateStrategy": {"type": "OnDelete"}},
        "status": {"observedGeneration": 2, **status},
    }


def test_on_delete_workloads_are_pending_until_their_pods_are_replaced() -> None:
    sts = on_delete("StatefulSet", {"readyReplicas": 2, "updatedReplicas": 0})
    assert rollout_pending("StatefulSet", sts) == "OnDelete: 0 of 2 pods replaced"
    done = on_delete("StatefulSet", {"readyReplicas": 2, "updatedReplicas": 2})
    assert rollout_pending("StatefulSet", done) is None
    ds = on_delete(
        "DaemonSet",
        {"desiredNumberScheduled": 3, "updatedNumberScheduled": 1, "numberAvailable": 3},
    )
    assert (rollout_pending("DaemonSet", ds) or "").startswith("OnDelete: 1 of 3")


def test_a_paused_rollout_refuses_the_upgrade_at_plan_time() -> None:
    paused = deployment("web", "1-30-3").model_copy(update={"paused": True})
    inv = inventory({"a": ENABLED}, workloads={"a": [paused]})
    _, report = plan_upgrade(inv, spec(), "w")
    found = [f for f in report.errors if f.code == "ROLLOUT_PAUSED"]
    assert found and "kubectl rollout resume -n a deployment/web" in found[0].message


def test_verification_checks_every_pod_of_a_relabelled_namespace_with_a_gateway() -> None:
    from istio_upgrade.models.plan import Batch, NamespaceLabels, WorkloadRevision
    from istio_upgrade.workflows.phases.migrate import _only_workloads

    batch = Batch(
        index=3,
        namespaces=["a", "edge"],
        original_labels=[NamespaceLabels(namespace="a", istio_injection="enabled")],
        workloads=[
            WorkloadRevision(namespace="a", kind="Gateway", name="gw", deployment="gw-istio"),
            WorkloadRevision(namespace="edge", kind="Gateway", name="pub", deployment="pub-istio"),
        ],
    )
    assert _only_workloads(batch) == {"edge": ["Deployment/pub-istio"]}
