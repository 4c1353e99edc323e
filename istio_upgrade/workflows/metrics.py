"""The upgrade's own metrics, counted by the workflow on the SDK's replay-safe meter.

``workflow.metric_meter()`` records nothing while a history replays (sdk-python
``temporalio/worker/_workflow_instance.py``, ``_ReplaySafeMetricMeter``), so each event is
counted once, on the worker that first ran it, however often the workflow is replayed. The
worker exports them with the SDK's metrics (``istio_upgrade/observability.py``); counters get
``_total`` there.

Guarded by the ``workflow-metrics`` patch, like every change of workflow code: runs recorded
before it replay without the calls (a meter records no command, but the guard keeps the rule
simple and the histories honest).
"""

from __future__ import annotations

from temporalio import workflow

WORKFLOW_METRICS = "workflow-metrics"
"""Patch: the workflow counts gate verdicts, phases entered and rollbacks."""

GATE_VERDICTS = "istio_upgrade_gate_verdicts"
PHASES = "istio_upgrade_upgrade_phases"
ROLLBACKS = "istio_upgrade_rollbacks"


def _count(name: str, description: str, labels: dict[str, str]) -> None:
    if workflow.patched(WORKFLOW_METRICS):
        workflow.metric_meter().create_counter(name, description).add(1, labels)


def gate_verdict(verdict: str) -> None:
    """One gate evaluation ended with ``verdict`` (PASS, FAIL or INCONCLUSIVE)."""
    _count(GATE_VERDICTS, "Gate evaluations by verdict.", {"verdict": verdict})


def phase_entered(phase: str) -> None:
    """An upgrade entered ``phase`` (its terminal phases count outcomes)."""
    _count(PHASES, "Upgrade phases entered, by phase.", {"phase": phase})


def rollback(outcome: str) -> None:
    """A rollback ended: ``complete`` or ``incomplete`` (something could not be undone)."""
    _count(ROLLBACKS, "Rollbacks by outcome.", {"outcome": outcome})
