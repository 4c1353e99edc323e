"""Worker Versioning on the real dev server: two worker versions side by side.

A pinned upgrade waiting for an approval stays on v1 after v2 became current, while a new
upgrade starts and finishes on v2. Once approved, the first upgrade finishes its batch on v1,
continues as new at the next batch boundary (a newer version is current) and completes on
v2; v1 then has no open run and the server reports it drained.

Both workers hold one kubeconfig with both sandboxes (contexts ``first`` and ``second``): the
continued run of the first upgrade, on v2, carries on with the first cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import EventType, TaskQueueType, VersioningBehavior
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from istio_upgrade.cli.workers import no_current_version
from istio_upgrade.devenv import LocalTemporal, MissingBinaryError, ScrapeTarget, start_dev_server
from istio_upgrade.models import ApproveRequest, UpgradeSpec, workflow_id_for
from istio_upgrade.versioning import (
    VersioningSettings,
    current_build_id,
    describe_deployment,
    drainage,
    set_current,
    wait_registered,
)
from istio_upgrade.worker import build_worker, build_workers, worker_queues
from istio_upgrade.workflows.continuation import UPGRADE_ON_CONTINUE
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.conftest import missing
from tests.integration.upgrade_stack import Cli, fast_spec, wait_progress

pytestmark = pytest.mark.slow

# The server re-checks a draining version's open pinned runs this often (default 3 minutes).
FAST_DRAINAGE = (
    'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
)


@contextlib.asynccontextmanager
async def own_server() -> AsyncIterator[LocalTemporal]:
    """A dev server of this test's own: its deployment's current version is the test's alone."""
    try:
        server = await start_dev_server(ui=False, dynamic_config=FAST_DRAINAGE)
    except MissingBinaryError as error:
        missing(error)
        raise
    try:
        yield server
    finally:
        await server.shutdown()


def versioned_worker(
    client: Client, task_queue: str, kubeconfig: str, settings: VersioningSettings
) -> Worker:
    return build_worker(
        client,
        task_queue=task_queue,
        kubeconfig=kubeconfig,
        deployment=settings.deployment_config(),
    )


async def run_version(client: Client, workflow_id: str, run_id: str | None = None) -> str:
    """Build id of the version the run is pinned to (the latest run without ``run_id``)."""
    described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED, info
    return str(info.deployment_version.build_id)


async def task_versions(client: Client, workflow_id: str, run_id: str) -> list[str]:
    """Build ids of every workflow task completion of one run, in order."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return [
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


async def wait_drained(client: Client, settings: VersioningSettings) -> str:
    status = ""
    for _ in range(300):
        status = await drainage(client, settings.version)
        if status == "DRAINED":
            return status
        await asyncio.sleep(0.2)
    pytest.fail(f"{settings.version.to_canonical_string()} never drained (last: {status})")


async def pinned_to(client: Client, settings: VersioningSettings) -> list[str]:
    """Open runs pinned to a version, by the visibility query of docs/operations.md."""
    value = f"{settings.deployment_name}:{settings.build_id}"
    query = f"TemporalWorkerDeploymentVersion='{value}' AND ExecutionStatus='Running'"
    found: list[str] = []
    for _ in range(100):  # visibility trails the workflow task that pinned the run
        found = [w.id async for w in client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    return found


def spec_for(prometheus_url: str, cluster: str, **overrides: Any) -> UpgradeSpec:
    return fast_spec(prometheus_url, cluster={"name": cluster, "context": cluster}, **overrides)


def merge_kubeconfigs(paths: list[Path], into: str) -> None:
    """One kubeconfig with the clusters, users and contexts of several (distinct names)."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for key in ("clusters", "users", "contexts"):
        merged[key] = [item for p in paths for item in yaml.safe_load(p.read_text())[key]]
    merged["current-context"] = merged["contexts"][0]["name"]
    Path(into).write_text(yaml.safe_dump(merged))


async def test_pinned_upgrade_stays_on_v1_while_a_new_one_runs_on_v2(
    sandbox_factory: Any, prometheus_factory: Any, tmp_path: Path
) -> None:
    first_cluster = await sandbox_factory("demo", context="first")
    second_cluster = await sandbox_factory("demo", context="second")
    kubeconfig = str(tmp_path / "kubeconfig")
    merge_kubeconfigs([first_cluster.kubeconfig, second_cluster.kubeconfig], kubeconfig)
    # One Prometheus per cluster: the gate's queries do not tell two sandboxes' series apart.
    first_prometheus = await prometheus_factory([ScrapeTarget(address=first_cluster.address)])
    second_prometheus = await prometheus_factory([ScrapeTarget(address=second_cluster.address)])
    for prometheus in (first_prometheus, second_prometheus):
        await prometheus.wait_for_series("istio_requests_total", timeout_s=30)
    name = f"istio-upgrade-{uuid.uuid4().hex[:8]}"
    v1 = VersioningSettings(enabled=True, deployment_name=name, build_id="v1")
    v2 = VersioningSettings(enabled=True, deployment_name=name, build_id="v2")
    queue = f"{name}-queue"

    async with own_server() as server:
        client = server.env.client
        async with versioned_worker(client, queue, kubeconfig, v1):
            await wait_registered(client, v1.version)
            await set_current(client, v1.version)
            first_spec = spec_for(
                first_prometheus.url, "first", approvals={"before_first_batch": True}
            )
            first = await client.start_workflow(
                IstioCanaryUpgrade.run, first_spec, id=workflow_id_for(first_spec), task_queue=queue
            )
            waiting = await wait_progress(
                first, lambda p: p.waiting_for, "the first upgrade's approval", seconds=120
            )
            assert "batch 0" in (waiting.waiting_for or "")
            assert await run_version(client, first.id, first.first_execution_run_id) == "v1"

            async with versioned_worker(client, queue, kubeconfig, v2):
                await wait_registered(client, v2.version)
                await set_current(client, v2.version)
                assert current_build_id(await describe_deployment(client, name)) == "v2"

                second_spec = spec_for(second_prometheus.url, "second")
                second = await client.start_workflow(
                    IstioCanaryUpgrade.run,
                    second_spec,
                    id=workflow_id_for(second_spec),
                    task_queue=queue,
                )
                second_result = await second.result()
                assert second_result.outcome == "SUCCEEDED", second_result.summary
                assert await run_version(client, second.id) == "v2"
                assert set(await task_versions(client, second.id, second.result_run_id or "")) == {
                    "v2"
                }

                # The pinned upgrade did not move: it still waits, on v1, answering queries there.
                assert await run_version(client, first.id, first.first_execution_run_id) == "v1"
                still = await first.query(IstioCanaryUpgrade.progress)
                assert still.waiting_for == waiting.waiting_for
                assert await drainage(client, v1.version) == "DRAINING"
                # The query docs/operations.md gives for "which runs hold a version".
                assert await pinned_to(client, v1) == [first.id]

                await first.execute_update(
                    IstioCanaryUpgrade.approve, ApproveRequest(approver="alice")
                )
                first_result = await first.result()
                assert first_result.outcome == "SUCCEEDED", first_result.summary

                # Its first run did batch 0 on v1 and handed over at batch 1; the rest ran on v2.
                first_run = first.first_execution_run_id or ""
                assert set(await task_versions(client, first.id, first_run)) == {"v1"}
                history = await client.get_workflow_handle(
                    first.id, run_id=first_run
                ).fetch_history()
                ended = history.events[-1]
                assert ended.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
                # The hand-over took the patched path (the server does not echo the command's
                # initial_versioning_behavior into this event; the next run's version shows it).
                patches = [
                    json.loads(m.details["patch-data"].payloads[0].data)["id"]
                    for m in (e.marker_recorded_event_attributes for e in history.events)
                    if m.marker_name == "core_patch"
                ]
                assert UPGRADE_ON_CONTINUE in patches
                last = await client.get_workflow_handle(first.id).describe()
                assert last.run_id != first_run
                assert await run_version(client, first.id, last.run_id) == "v2"
                assert set(await task_versions(client, first.id, last.run_id)) == {"v2"}

                # Nothing open is pinned to v1 any more: its workers may be retired.
                assert await wait_drained(client, v1) == "DRAINED"


async def test_only_workflow_queues_register_the_version(
    temporal_local: WorkflowEnvironment,
) -> None:
    client: Client = temporal_local.client
    settings = VersioningSettings(True, "istio-upgrade", "9.9.9")
    queues = worker_queues(["east"], main=True, main_queue="main")
    workers = build_workers(client, queues, versioning=settings)
    configs = {w.task_queue: w.config().get("deployment_config") for w in workers}
    assert configs["main"] is not None and configs["main"].version.build_id == "9.9.9"
    # An activity-only cluster worker stays unversioned: it need not roll out in step.
    assert configs["istio-upgrade.cluster.east"] is None


async def test_cli_rolls_a_version_out(tmp_path: Path) -> None:
    """``istio-upgrade workers``: status, the start-time warning, ramp and set-current."""
    name = f"istio-upgrade-{uuid.uuid4().hex[:8]}"
    v1 = VersioningSettings(enabled=True, deployment_name=name, build_id="1.0")
    v2 = VersioningSettings(enabled=True, deployment_name=name, build_id="2.0")
    queue = f"{name}-queue"
    async with own_server() as server:
        client = server.env.client
        cli = Cli(server.address, queue)

        async def run(*args: str) -> str:
            result = await cli("workers", *args, "--deployment-name", name)
            assert result.exit_code == 0, (args, result.output)
            return result.output

        async def queue_without_current() -> bool:
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            return no_current_version(response)

        kubeconfig = str(tmp_path / "unused-kubeconfig")
        async with (
            versioned_worker(client, queue, kubeconfig, v1),
            versioned_worker(client, queue, kubeconfig, v2),
        ):
            await wait_registered(client, v1.version)
            await wait_registered(client, v2.version)
            assert "(unversioned workers are current)" in await run("status")
            # What `istio-upgrade start` warns about: versioned pollers, nothing current.
            for _ in range(100):
                if await queue_without_current():
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("versioned pollers without a current version not recognised")

            refused = await cli(
                "workers", "set-current", "--deployment-name", name, "--build-id", "9.9"
            )
            assert refused.exit_code == 7, refused.output

            assert "is current" in await run("set-current", "--build-id", "1.0")
            assert "ramps at 25%" in await run("ramp", "--build-id", "2.0", "--percent", "25")
            status = await run("status")
            assert "1.0\tcurrent" in status and "2.0\tramping 25%" in status, status
            for _ in range(100):
                if not await queue_without_current():
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("the queue never learnt its current version")

            assert "is current" in await run("set-current", "--build-id", "2.0")
            described = await describe_deployment(client, name)
            assert current_build_id(described) == "2.0"
            # 1.0 was current: now it drains (nothing pinned to it, so it drains at once).
            assert await wait_drained(client, v1) == "DRAINED"
            assert "1.0\t-\tdrainage DRAINED" in await run("status")
