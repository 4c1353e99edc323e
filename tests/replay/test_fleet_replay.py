"""Replay recorded fleet histories: a FleetRollout change that breaks running fleets fails here.

Recorded by ``RECORD_HISTORIES=1 pytest -m slow tests/integration/test_fleet.py`` into
``fleet_histories/`` (beside, never instead of, older ones); guard a deliberately incompatible
change with ``workflow.patched``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from istio_upgrade.workflows.fleet import FleetRollout

HISTORIES = Path(__file__).parent / "fleet_histories"
EXPECTED = {"fleet-three-stages-1.json", "fleet-budget-exceeded-1.json"}


def test_every_expected_history_is_recorded() -> None:
    assert {p.name for p in HISTORIES.glob("*.json")} >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_fleet_history_replays_deterministically(name: str) -> None:
    path = HISTORIES / name
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[FleetRollout], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
