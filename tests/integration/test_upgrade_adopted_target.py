"""A target revision adopted with ``force`` is not uninstalled when the upgrade rolls back.

Runs the real workflow on the time-skipping test server with stand-in activities registered
under the real names: what matters here is which activities the workflow calls.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from istio_upgrade.models import RevisionInfo
from istio_upgrade.models.activities import (
    BundleCheckInput,
    BundleCheckResult,
    DiscoverInput,
    InstallInput,
    InstallResult,
    LockInput,
    LockResult,
    PlanInput,
    PlanningResult,
    PrometheusProbe,
    RevisionInput,
    UninstallResult,
)
from istio_upgrade.models.inventory import ClusterInventory
from istio_upgrade.models.permissions import PermissionReport, PermissionsInput
from istio_upgrade.planning import plan_upgrade
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.unit.plan_fixtures import ENABLED, inventory, spec

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("installed_by", [None, "earlier"], ids=["adopted", "own"])
async def test_rollback_keeps_an_adopted_target_revision(
    temporal_ts: WorkflowEnvironment, installed_by: str | None
) -> None:
    workflow_id = f"adopt-{uuid.uuid4()}"
    owner = workflow_id if installed_by == "earlier" else None
    existing = RevisionInfo(name="1-31-0", version="1.31.0", installed_by=owner, ready=True)
    inv = inventory({"a": ENABLED}, extra_revisions=[existing])
    uninstalled: list[str] = []

    @activity.defn(name="discover")
    async def discover(_: DiscoverInput) -> ClusterInventory:
        return inv

    @activity.defn(name="plan_cluster")
    async def plan_cluster(request: PlanInput) -> PlanningResult:
        # What the real activity does, on the stand-in inventory.
        plan, report = plan_upgrade(inv, request.spec, request.upgrade_id, per_workload=True)
        return PlanningResult(plan=plan, report=report, tags=inv.tags)

    @activity.defn(name="check_bundles")
    async def check_bundles(_: BundleCheckInput) -> BundleCheckResult:
        return BundleCheckResult(revision_objects=12)

    @activity.defn(name="install_revision")
    async def install_revision(_: InstallInput) -> InstallResult:
        return InstallResult(inventory_configmap="istio-upgrade-inventory-1-31-0")

    @activity.defn(name="wait_revision_ready")
    async def wait_revision_ready(_: RevisionInput) -> None:
        raise ApplicationError("not ready", type="RevisionNotReady", non_retryable=True)

    @activity.defn(name="uninstall_revision")
    async def uninstall_revision(request: RevisionInput) -> UninstallResult:
        uninstalled.append(request.revision)
        return UninstallResult()

    @activity.defn(name="check_permissions")
    async def check_permissions(_: PermissionsInput) -> PermissionReport:
        return PermissionReport(checked=1)

    @activity.defn(name="probe_prometheus")
    async def probe_prometheus(_: str) -> PrometheusProbe:
        return PrometheusProbe()

    locks: list[str] = []

    @activity.defn(name="acquire_cluster_lock")
    async def acquire_cluster_lock(request: LockInput) -> LockResult:
        locks.append(f"acquire {request.holder}")
        return LockResult(acquired=True, holder=request.holder)

    @activity.defn(name="release_cluster_lock")
    async def release_cluster_lock(request: LockInput) -> bool:
        locks.append(f"release {request.holder}")
        return True

    queue = f"q-{uuid.uuid4()}"
    client = temporal_ts.client
    client = type(client)(client.service_client, data_converter=pydantic_data_converter)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[IstioCanaryUpgrade],
        activities=[
            discover,
            plan_cluster,
            check_bundles,
            install_revision,
            wait_revision_ready,
            uninstall_revision,
            acquire_cluster_lock,
            release_cluster_lock,
            check_permissions,
            probe_prometheus,
        ],
    ):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(
                IstioCanaryUpgrade.run,
                spec(
                    force=True,
                    gate={"prometheus_url": "http://prometheus:9090"},
                    installer={"bundle_path": "/bundles/istiod-1-31-0.yaml"},
                ),
                id=workflow_id,
                task_queue=queue,
            )
    # Rolled back because the revision never became Ready (not for any other reason).
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and "not ready" in cause.message, cause
    assert uninstalled == ([] if installed_by is None else ["1-31-0"])
    # Held as this run (``<workflow id>@<first run id>``), released by the same holder.
    holder = locks[0].removeprefix("acquire ")
    assert holder.startswith(f"{workflow_id}@"), locks
    assert locks == [f"acquire {holder}", f"release {holder}"]
