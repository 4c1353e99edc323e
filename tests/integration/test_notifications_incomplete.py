"""An incomplete rollback tells its receivers that the lock is kept and a person must repair.

The real workflow on the time-skipping test server, with stand-in cluster activities under the
real names (as ``test_upgrade_adopted_target.py``): the new revision never becomes Ready and
its uninstall is refused, so the rollback is incomplete. The real ``notify`` activity posts
to a local aiohttp receiver.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from istio_upgrade.activities.notify import notify
from istio_upgrade.models.activities import (
    BundleCheckInput,
    BundleCheckResult,
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
from istio_upgrade.models.permissions import PermissionReport, PermissionsInput
from istio_upgrade.planning import plan_upgrade
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.test_notifications import check_slack_shape, receiver, secret_path
from tests.unit.plan_fixtures import ENABLED, inventory, spec

pytestmark = pytest.mark.slow


async def test_incomplete_rollback_tells_lock_kept_and_rollback_incomplete(
    temporal_ts: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = inventory({"a": ENABLED})
    locks: list[str] = []

    @activity.defn(name="plan_cluster")
    async def plan_cluster(request: PlanInput) -> PlanningResult:
        plan, report = plan_upgrade(inv, request.spec, request.upgrade_id, per_workload=True)
        return PlanningResult(plan=plan, report=report, tags=inv.tags)

    @activity.defn(name="check_bundles")
    async def check_bundles(_: BundleCheckInput) -> BundleCheckResult:
        return BundleCheckResult(revision_objects=12)

    @activity.defn(name="check_permissions")
    async def check_permissions(_: PermissionsInput) -> PermissionReport:
        return PermissionReport(checked=1)

    @activity.defn(name="probe_prometheus")
    async def probe_prometheus(_: str) -> PrometheusProbe:
        return PrometheusProbe()

    @activity.defn(name="acquire_cluster_lock")
    async def acquire_cluster_lock(request: LockInput) -> LockResult:
        locks.append("acquire")
        return LockResult(acquired=True, holder=request.holder)

    @activity.defn(name="release_cluster_lock")
    async def release_cluster_lock(_: LockInput) -> bool:
        locks.append("release")
        return True

    @activity.defn(name="install_revision")
    async def install_revision(_: InstallInput) -> InstallResult:
        return InstallResult(inventory_configmap="istio-upgrade-inventory-1-31-0")

    @activity.defn(name="wait_revision_ready")
    async def wait_revision_ready(_: RevisionInput) -> None:
        raise ApplicationError("not ready", type="RevisionNotReady", non_retryable=True)

    @activity.defn(name="uninstall_revision")
    async def uninstall_revision(_: RevisionInput) -> UninstallResult:
        raise ApplicationError("deployments is forbidden", type="Forbidden", non_retryable=True)

    async with receiver() as hooks:
        json_path, slack_path = secret_path(), secret_path()
        monkeypatch.setenv("ISTIO_UPGRADE_TEST_INCOMPLETE_JSON", hooks.url(json_path))
        monkeypatch.setenv("ISTIO_UPGRADE_TEST_INCOMPLETE_SLACK", hooks.url(slack_path))
        queue = f"q-{uuid.uuid4()}"
        workflow_id = f"incomplete-{uuid.uuid4()}"
        client = temporal_ts.client
        client = type(client)(client.service_client, data_converter=pydantic_data_converter)
        async with Worker(
            client,
            task_queue=queue,
            workflows=[IstioCanaryUpgrade],
            activities=[
                plan_cluster,
                check_bundles,
                check_permissions,
                probe_prometheus,
                acquire_cluster_lock,
                release_cluster_lock,
                install_revision,
                wait_revision_ready,
                uninstall_revision,
                notify,
            ],
        ):
            with pytest.raises(WorkflowFailureError) as info:
                await client.execute_workflow(
                    IstioCanaryUpgrade.run,
                    spec(
                        gate={"prometheus_url": "http://prometheus:9090"},
                        installer={"bundle_path": "/bundles/istiod-1-31-0.yaml"},
                        notifications=[
                            {"name": "oncall", "url_env": "ISTIO_UPGRADE_TEST_INCOMPLETE_JSON"},
                            {
                                "name": "slack",
                                "format": "slack",
                                "url_env": "ISTIO_UPGRADE_TEST_INCOMPLETE_SLACK",
                                "events": ["rollback_incomplete"],
                            },
                        ],
                    ),
                    id=workflow_id,
                    task_queue=queue,
                )
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and "INCOMPLETE" in cause.message, cause
    assert locks == ["acquire"]  # kept: the cluster needs a person
    assert hooks.events(json_path) == ["lock_kept", "rollback_incomplete"]
    assert hooks.events(slack_path) == ["rollback_incomplete"]
    kept, incomplete = (r.body for r in hooks.at(json_path))
    assert "istio-upgrade unlock --cluster c1" in kept["next_steps"]
    assert incomplete["phase"] == "FAILED"
    assert any("forbidden" in r for r in incomplete["reasons"]), incomplete["reasons"]
    assert "istio-upgrade unlock --cluster c1" in incomplete["next_steps"]
    (slack,) = (r.body for r in hooks.at(slack_path))
    check_slack_shape(slack)
    assert "rollback INCOMPLETE" in slack["text"]
    details: Any = cause.details[0]
    outcome = details["outcome"] if isinstance(details, dict) else details.outcome
    assert outcome == "FAILED"
