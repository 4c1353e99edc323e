"""Benchmark the workflow's history growth from recorded upgrade histories.

Reads the histories recorded by real runs (``tests/replay/histories/``), measures events and
bytes per batch and per gate evaluation, and projects how many batches of a production gate
(soak and interval from ``GateSpec``'s defaults) fit in one run below 10,000 events — past
that an upgrade continues as new. Prints JSON.

Usage::

    python bench/history_size.py [--history tests/replay/histories/clean-upgrade.json]
        [--out results.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from istio_upgrade.models import GateSpec

HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "replay" / "histories"
FORWARD_STEPS = ("relabel_namespaces", "restart_workloads", "wait_rollouts", "verify_namespaces")
EVENT_BUDGET = 10_000


def _activity(event: dict[str, Any]) -> str | None:
    attributes = event.get("activityTaskScheduledEventAttributes")
    return attributes["activityType"]["name"] if attributes else None


def _size_at(events: list[dict[str, Any]], index: int) -> int:
    """``historySizeBytes`` reported by the last workflow task started at or before ``index``."""
    for event in reversed(events[: index + 1]):
        attributes = event.get("workflowTaskStartedEventAttributes")
        if attributes and "historySizeBytes" in attributes:
            return int(attributes["historySizeBytes"])
    return 0


def measure(path: Path) -> dict[str, Any]:
    """Events and bytes per batch and per gate evaluation of one recorded history."""
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    names = [_activity(e) for e in events]
    batch_starts = [i for i, n in enumerate(names) if n == "relabel_namespaces"]
    evaluations = [i for i, n in enumerate(names) if n == "measure_gate"]
    # Consecutive evaluations of one batch: the events and bytes one evaluation adds.
    gaps = [
        (b - a, _size_at(events, b) - _size_at(events, a))
        for a, b in itertools.pairwise(evaluations)
        if not any(a < s < b for s in batch_starts)
    ]
    per_eval_events = statistics.median(g[0] for g in gaps) if gaps else math.nan
    per_eval_bytes = statistics.median(g[1] for g in gaps) if gaps else math.nan
    # A batch = its fixed steps + its evaluations: fixed = span - evaluations x per_eval.
    fixed: list[float] = []
    for start, end in zip(batch_starts, [*batch_starts[1:], len(events)], strict=False):
        in_batch = [i for i in evaluations if start < i < end]
        if in_batch and end < len(events):
            span = end - start
            fixed.append(span - len(in_batch) * per_eval_events)
    return {
        "history": path.name,
        "events": len(events),
        "history_bytes": _size_at(events, len(events) - 1),
        "batches_started": len(batch_starts),
        "gate_evaluations": len(evaluations),
        "events_per_evaluation": per_eval_events,
        "bytes_per_evaluation": per_eval_bytes,
        "fixed_events_per_batch": statistics.median(fixed) if fixed else None,
    }


def project(sample: dict[str, Any]) -> dict[str, Any]:
    """Events per batch and batches per run for a gate with the spec's default windows."""
    gate = GateSpec()
    evaluations = math.ceil(gate.soak_seconds / gate.interval_seconds)
    per_batch = sample["fixed_events_per_batch"] + evaluations * sample["events_per_evaluation"]
    return {
        "gate": {"soak_seconds": gate.soak_seconds, "interval_seconds": gate.interval_seconds},
        "evaluations_per_batch": evaluations,
        "events_per_batch": per_batch,
        "bytes_per_batch": evaluations * sample["bytes_per_evaluation"],
        "batches_per_10k_events": math.floor(EVENT_BUDGET / per_batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=HISTORIES / "clean-upgrade.json")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sample = measure(args.history)
    result = {"measured": sample, "projected_default_gate": project(sample)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
