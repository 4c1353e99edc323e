"""Replay recorded upgrade histories: a workflow change that breaks running upgrades fails here.

Re-record (``RECORD_HISTORIES=1 pytest -m slow tests/integration/test_upgrade_clean.py
tests/integration/test_upgrade_rollback.py``) only for a deliberately incompatible change, and
guard that change with ``workflow.patched`` so running upgrades keep their old path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

HISTORIES = Path(__file__).parent / "histories"
EXPECTED = {
    "clean-upgrade.json",
    "bad-canary-rollback.json",
    "continued-run-1.json",
    "continued-run-2.json",
    # Recorded with the phase modules, typed activity calls and the patches of this era
    # (bundle-precheck, crds-step, per-workload-opt-in, label-drift-check, restore-label-form).
    "clean-upgrade-2.json",
    "bad-canary-rollback-2.json",
    "continued-run-2-1.json",
    "continued-run-2-2.json",
    "revisionless-abort-after-promote-2.json",
    "shapes-upgrade-2.json",
    # Recorded with cancellation as an abort (steered-cancellation), interruptible waits,
    # patient undo steps, the run identity of locks and stamps and the permission precheck.
    "clean-upgrade-3.json",
    "bad-canary-rollback-3.json",
    "continued-run-3-1.json",
    "continued-run-3-2.json",
    "cancel-during-rollback-3.json",
    "removal-refused-3.json",
    # With WAIT_CANCELLATION_COMPLETED and the Prometheus precheck; an abort cancels a wait.
    "clean-upgrade-4.json",
    "cancel-during-rollback-4.json",
    "abort-interrupts-wait-4.json",
    # Planned by the plan_cluster activity, bounded progress and relabel inputs, gate baselines
    # read by query and pooled, quiet namespaces, budget spent, anchored evaluations,
    # maintenance windows and per-cluster task queues.
    "clean-upgrade-5.json",
    "bad-canary-rollback-5.json",
    "continued-run-5-1.json",
    "continued-run-5-2.json",
    "cancel-during-rollback-5.json",
    "window-open-5.json",
    "window-wait-abort-5.json",
    "cluster-task-queue-5.json",
    # With notifications (patch notifications): an approval and a success told to a JSON and
    # a Slack receiver; a gate failure and its rollback; receivers that fail (500, down, unset).
    "notifications-approval-6.json",
    "notifications-rollback-6.json",
    "notifications-failed-6.json",
    # The gate's Prometheus behind basic auth and TLS (prometheus-auth): references only.
    "prometheus-auth-6.json",
    # Counting gate verdicts, phases and rollbacks on the SDK's metric meter (workflow-metrics).
    "clean-upgrade-6.json",
    "bad-canary-rollback-6.json",
    # Installer strategy sail (patch sail-installer): the revision and tag steps carry the
    # installer, the precheck reads the Istio resource; pruned by the operator or deleted.
    "sail-upgrade-sail-6.json",
    "sail-upgrade-delete-6.json",
    "sail-bad-canary-rollback-6.json",
}


def test_recorded_histories_exist() -> None:
    assert {p.name for p in HISTORIES.glob("*.json")} >= EXPECTED


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())


def replayer() -> Replayer:
    return Replayer(
        workflows=[IstioCanaryUpgrade, IstioRevisionRemoval], data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_history_replays_deterministically(path: Path) -> None:
    history = load(path)
    assert len(history.events) > 10
    result = await replayer().replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_upgrades_recorded_before_continue_as_new_replay_with_the_suggestion() -> None:
    # The server may have suggested continuing as new in histories recorded before runs could;
    # replaying them must not continue as new (the change is guarded by workflow.patched).
    doc = json.loads((HISTORIES / "clean-upgrade.json").read_text())
    flagged = 0
    for event in doc["events"]:
        attributes = event.get("workflowTaskStartedEventAttributes")
        if attributes is not None:
            attributes["suggestContinueAsNew"] = True
            flagged += 1
    assert flagged > 10
    history = WorkflowHistory.from_json("replay-suggested", json.dumps(doc))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
