"""Which run a start reaches: dry runs under their own id, no silent attach of another spec.

No worker polls the task queue here: a started upgrade simply stays RUNNING, which is all a
second start needs to see.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus

from istio_upgrade.client import SpecConflictError, start_upgrade, workflow_id
from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.models import UpgradeSpec


def _spec(cluster: str, **migration: object) -> UpgradeSpec:
    return UpgradeSpec.model_validate(
        {
            "cluster": {"name": cluster, "prometheus_url": "http://127.0.0.1:9"},
            "target": {"version": "1.31.0"},
            "installer": {"bundle_yaml": "apiVersion: v1\nkind: List\nitems: []\n"},
            "migration": {"canary": ["frontend"], **migration},
        }
    )


async def test_the_same_spec_follows_a_different_spec_is_refused(
    temporal_dev_server: LocalTemporal,
) -> None:
    client = temporal_dev_server.env.client
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    cluster = f"c{uuid.uuid4().hex[:6]}"
    first = await start_upgrade(client, _spec(cluster, max_batch_size=20), task_queue=queue)
    try:
        again = await start_upgrade(client, _spec(cluster, max_batch_size=20), task_queue=queue)
        assert (again.id, again.result_run_id or first.result_run_id) == (
            first.id,
            first.result_run_id,
        )
        with pytest.raises(SpecConflictError) as refused:
            await start_upgrade(client, _spec(cluster, max_batch_size=50), task_queue=queue)
        assert "migration.max_batch_size: 20 → 50" in str(refused.value)
        assert refused.value.upgrade_id == first.id
    finally:
        await first.terminate("test over")


async def test_a_dry_run_never_takes_the_upgrades_id(temporal_dev_server: LocalTemporal) -> None:
    client = temporal_dev_server.env.client
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    cluster = f"c{uuid.uuid4().hex[:6]}"
    dry = _spec(cluster).model_copy(update={"dry_run": True})
    dry_handle = await start_upgrade(client, dry, task_queue=queue)
    real = await start_upgrade(client, _spec(cluster), task_queue=queue)
    try:
        assert real.id == workflow_id(_spec(cluster))
        assert dry_handle.id.startswith(real.id + ".dry-run-")
        assert (await real.describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        await real.terminate("test over")
        await dry_handle.terminate("test over")
