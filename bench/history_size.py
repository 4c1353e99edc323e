"""Benchmark the workflow's history growth from recorded upgrade histories.

Reads the histories recorded by real runs (``tests/replay/histories/``), measures events and
bytes per batch and per gate evaluation, and projects how many batches of a production gate
(soak and interval from ``GateSpec``'s defaults) fit in one run before the Temporal server
suggests continuing as new (its defaults: 4,096 events or 4 MiB of history, whichever comes
first) — there an upgrade continues as new. Prints JSON.

Usage::

    python -m bench.history_size [--history tests/replay/histories/clean-upgrade.json]
        [--json results.json]
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
# The server's defaults for suggesting continue-as-new: limit.historyCount.suggestContinueAsNew
# and limit.historySize.suggestContinueAsNew.
EVENT_BUDGET = 4 * 1024
BYTE_BUDGET = 4 * 1024 * 1024


def _activity(event: dict[str, Any]) -> str | None:
    attributes = event.get("activityTaskScheduledEventAttributes")
    return attributes["activityType"]["name"] if attributes else None


def _sizes(events: list[dict[str, Any]]) -> list[int]:
    """``historySizeBytes`` at each event: what the last workflow task started so far reported."""
    sizes, size = [], 0
    for event in events:
        attributes = event.get("workflowTaskStartedEventAttributes")
        if attributes and "historySizeBytes" in attributes:
            size = int(attributes["historySizeBytes"])
        sizes.append(size)
    return sizes


def measure(path: Path) -> dict[str, Any]:
    """Events and bytes per batch and per gate evaluation of one recorded history."""
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    sizes = _sizes(events)
    names = [_activity(e) for e in events]
    batch_starts = [i for i, n in enumerate(names) if n == "relabel_namespaces"]
    evaluations = [i for i, n in enumerate(names) if n == "measure_gate"]
    # Consecutive evaluations of one batch: the events and bytes one evaluation adds.
    gaps = [
        (b - a, sizes[b] - sizes[a])
        for a, b in itertools.pairwise(evaluations)
        if not any(a < s < b for s in batch_starts)
    ]
    per_eval_events = statistics.median(g[0] for g in gaps) if gaps else math.nan
    per_eval_bytes = statistics.median(g[1] for g in gaps) if gaps else math.nan
    # A batch = its fixed steps + its evaluations: fixed = span - evaluations x per_eval.
    fixed_events: list[float] = []
    fixed_bytes: list[float] = []
    for start, end in zip(batch_starts, [*batch_starts[1:], len(events)], strict=False):
        in_batch = [i for i in evaluations if start < i < end]
        if in_batch and end < len(events):
            fixed_events.append(end - start - len(in_batch) * per_eval_events)
            fixed_bytes.append(sizes[end] - sizes[start] - len(in_batch) * per_eval_bytes)
    return {
        "history": path.name,
        "events": len(events),
        "history_bytes": sizes[-1],
        "batches_started": len(batch_starts),
        "gate_evaluations": len(evaluations),
        "events_per_evaluation": per_eval_events,
        "bytes_per_evaluation": per_eval_bytes,
        "fixed_events_per_batch": statistics.median(fixed_events) if fixed_events else None,
        "fixed_bytes_per_batch": statistics.median(fixed_bytes) if fixed_bytes else None,
    }


def project(sample: dict[str, Any]) -> dict[str, Any]:
    """Events, bytes and batches per run for a gate with the spec's default windows."""
    gate = GateSpec()
    evaluations = math.ceil(gate.soak_seconds / gate.interval_seconds)
    events = sample["fixed_events_per_batch"] + evaluations * sample["events_per_evaluation"]
    size = sample["fixed_bytes_per_batch"] + evaluations * sample["bytes_per_evaluation"]
    by_events, by_bytes = math.floor(EVENT_BUDGET / events), math.floor(BYTE_BUDGET / size)
    return {
        "gate": {"soak_seconds": gate.soak_seconds, "interval_seconds": gate.interval_seconds},
        "evaluations_per_batch": evaluations,
        "events_per_batch": events,
        "bytes_per_batch": size,
        "suggest_continue_as_new_at": {"events": EVENT_BUDGET, "bytes": BYTE_BUDGET},
        "batches_per_run_by_events": by_events,
        "batches_per_run_by_bytes": by_bytes,
        "run_ends_on": "events" if by_events <= by_bytes else "bytes",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=HISTORIES / "clean-upgrade.json")
    parser.add_argument("--json", "--out", dest="out", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    sample = measure(args.history)
    result = {"measured": sample, "projected_default_gate": project(sample)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
