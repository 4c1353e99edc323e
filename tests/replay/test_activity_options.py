"""Replaying a recorded history schedules the same activities with the same options.

The replayer checks the command sequence (activity names, timers, patches, markers), not the
options a step is scheduled with; a refactor of the workflow could change a timeout or a
retry policy unnoticed. ``activity_options.json`` pins, per recorded history, every activity
the workflow schedules: name, summary, timeouts and retry policy. Regenerate it
(``UPDATE_ACTIVITY_OPTIONS=1 pytest tests/replay/test_activity_options.py``) only for a
deliberate change of options, and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    ContinueAsNewInput,
    Interceptor,
    Replayer,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

HISTORIES = Path(__file__).parent / "histories"
GOLDEN = Path(__file__).parent / "activity_options.json"

SCHEDULED: list[dict[str, Any]] = []


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        retry = input.retry_policy
        SCHEDULED.append(
            {
                "activity": input.activity,
                "summary": input.summary,
                "args": len(input.args),
                "start_to_close": _seconds(input.start_to_close_timeout),
                "heartbeat": _seconds(input.heartbeat_timeout),
                "retry": None
                if retry is None
                else {
                    "initial_interval": _seconds(retry.initial_interval),
                    "backoff_coefficient": retry.backoff_coefficient,
                    "maximum_interval": _seconds(retry.maximum_interval),
                    "maximum_attempts": retry.maximum_attempts,
                    "non_retryable_error_types": retry.non_retryable_error_types,
                },
            }
        )
        return super().start_activity(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        SCHEDULED.append({"continue_as_new": len(input.args)})
        super().continue_as_new(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Record(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())


async def scheduled_by(history: WorkflowHistory) -> list[dict[str, Any]]:
    SCHEDULED.clear()
    replayer = Replayer(
        workflows=[IstioCanaryUpgrade, IstioRevisionRemoval],
        data_converter=pydantic_data_converter,
        interceptors=[_Record()],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
    return list(SCHEDULED)


def _read_golden() -> dict[str, list[dict[str, Any]]]:
    golden: dict[str, list[dict[str, Any]]] = json.loads(GOLDEN.read_text())
    return golden


def _write_golden(scheduled: dict[str, list[dict[str, Any]]]) -> None:
    GOLDEN.write_text(_dump(scheduled))


def _dump(scheduled: dict[str, list[dict[str, Any]]]) -> str:
    """One line per step, so that a diff shows which step changed."""
    histories = [
        f"  {json.dumps(name)}: [\n" + ",\n".join(f"    {json.dumps(s)}" for s in steps) + "\n  ]"
        for name, steps in scheduled.items()
    ]
    return "{\n" + ",\n".join(histories) + "\n}\n"


async def test_replays_schedule_the_pinned_activities_and_options() -> None:
    histories = {path.name: load(path) for path in sorted(HISTORIES.glob("*.json"))}
    actual = {name: await scheduled_by(history) for name, history in histories.items()}
    if os.environ.get("UPDATE_ACTIVITY_OPTIONS"):
        _write_golden(actual)
        pytest.skip("activity_options.json rewritten")
    expected = _read_golden()
    assert sorted(actual) == sorted(expected)
    for name, steps in expected.items():
        assert actual[name] == steps, name
