"""An undo step that keeps failing for a reason that may pass is retried, saying so.

A tiny workflow runs ``compensation.run_patiently`` around an activity that fails its first
calls (each an exhausted attempt, as after a long API outage) on the time-skipping test
server, so the 30-minute patience passes in seconds of real time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.workflows.compensation import UNDO_PATIENCE, run_patiently

FAILURES: dict[str, int] = {}


@activity.defn
async def flaky_undo(key: str) -> None:
    """Fails while ``FAILURES[key]`` is positive, like a restore against a dead API server."""
    if FAILURES[key] > 0:
        FAILURES[key] -= 1
        raise RuntimeError("connection refused")


@workflow.defn(sandboxed=False)
class PatientUndo:
    def __init__(self) -> None:
        self.shown: list[str | None] = []

    @workflow.run
    async def run(self, key: str) -> list[str | None]:
        async def step() -> None:
            await workflow.execute_activity(
                flaky_undo,
                key,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )

        error = await run_patiently("restore batch 0", step, self.shown.append)
        if error is not None:
            raise error
        return self.shown


async def _run(env: WorkflowEnvironment, failures: int) -> list[str | None]:
    key = uuid.uuid4().hex
    FAILURES[key] = failures
    queue = f"patient-{key[:8]}"
    async with Worker(
        env.client, task_queue=queue, workflows=[PatientUndo], activities=[flaky_undo]
    ):
        result: list[str | None] = await env.client.execute_workflow(
            PatientUndo.run, key, id=f"patient-{key}", task_queue=queue
        )
        return result


async def test_a_failing_undo_is_retried_and_shown_until_it_succeeds(
    temporal_ts: WorkflowEnvironment,
) -> None:
    shown = await _run(temporal_ts, failures=4)
    retries = [m for m in shown if m is not None]
    assert len(retries) == 4, shown
    assert all(m.startswith("rollback retrying: restore batch 0: ") for m in retries), shown
    assert "connection refused" in retries[0]
    assert shown[-1] is None, "the message is cleared once the step succeeded"


async def test_an_undo_failing_past_the_patience_gives_up_with_its_error(
    temporal_ts: WorkflowEnvironment,
) -> None:
    # Backoff grows to a minute: 30 minutes hold fewer than 40 tries.
    assert timedelta(minutes=30) == UNDO_PATIENCE
    try:
        await _run(temporal_ts, failures=1000)
    except WorkflowFailureError as failure:
        assert "connection refused" in str(failure.cause.cause if failure.cause else failure)
    else:
        raise AssertionError("an undo failing for longer than the patience must give up")
