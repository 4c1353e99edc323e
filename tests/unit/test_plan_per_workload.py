"""Workloads opted in per pod (Helm gateways) migrate by their pod template's revision."""

from __future__ import annotations

from istio_upgrade.planning import plan_upgrade
from tests.unit.plan_fixtures import ENABLED, deployment, inventory, spec


def cluster() -> object:
    gateway = deployment("istio-ingressgateway", "1-30-3").model_copy(
        update={"opt_in": True, "gateway": True}
    )
    reports = deployment("reports", "1-30-3").model_copy(update={"template_revision": "1-30-3"})
    plain = deployment("legacy-api", None)
    return inventory(
        {"a": ENABLED, "istio-ingress": {}, "reports": {}, "legacy": {}},
        workloads={
            "istio-ingress": [gateway],
            "reports": [reports, deployment("cron-helper", None)],
            "legacy": [plain],
        },
    )


def test_opted_in_workloads_migrate_per_workload_and_gateways_go_last() -> None:
    plan, report = plan_upgrade(cluster(), spec(), "w", per_workload=True)  # type: ignore[arg-type]
    assert report.ok, report.errors
    assert "reports" in plan.namespaces and "istio-ingress" in plan.namespaces
    last = plan.batches[-1]
    assert last.gateway and last.namespaces == ["istio-ingress"]
    assert [(w.ref, w.revision) for w in last.workloads] == [
        ("istio-ingress/Deployment/istio-ingressgateway", None)
    ]
    assert last.labelled_namespaces == [] and last.original_labels == []
    reports_batch = next(b for b in plan.batches if "reports" in b.namespaces)
    assert [(w.ref, w.revision) for w in reports_batch.workloads] == [
        ("reports/Deployment/reports", "1-30-3")
    ], "only the opted-in workload; its neighbour without a sidecar stays put"
    assert "legacy" in {e.namespace for e in plan.excluded}


def test_without_the_patch_the_plan_is_as_before() -> None:
    plan, _ = plan_upgrade(cluster(), spec(), "w")  # type: ignore[arg-type]
    assert "istio-ingress" not in plan.namespaces and "reports" not in plan.namespaces
    assert all(not b.workloads for b in plan.batches)
