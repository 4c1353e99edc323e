"""Gate detection quality: good and bad revisions, each upgraded for real, judged by the gate.

Every case is one real upgrade (``IstioCanaryUpgrade`` on a real Temporal dev server, a real
Prometheus scraping a fresh sandbox every second) of a small mesh whose canary batch is the
namespace ``cand``; the case's fault (``istio_sandbox.faults.TrafficFault``) is part of the
scenario from the start and, unless it says otherwise, hits only pods injected by the new
revision — so the batch is healthy before its migration and broken after it. The bench
follows the canary batch's gate evaluations through the ``progress`` query and reports, per
case, the first decisive verdict (FAIL or PASS; INCONCLUSIVE when neither came within the
horizon), the seconds from the batch's Ready to the evaluation that decided, and whether it
was right. Run::

    python -m bench.detection --json docs/detection-last-run.json

Targets: every bad case FAILs within warm-up + 2 intervals of its batch's Ready; no good case
FAILs (false FAIL) and no case that must not pass PASSes (false PASS); the idle namespace
passes its batch without waiting for anyone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

NEW, OLD = "1-31-0", "1-30-3"
WARMUP_S, INTERVAL_S = 2.0, 2.0
HORIZON = WARMUP_S + 2 * INTERVAL_S
"""A bad revision must FAIL by this many seconds after its batch is Ready."""
MAX_EVALUATIONS = 5
"""Evaluations watched before a case without a decisive verdict counts as INCONCLUSIVE."""
PRE_TRAFFIC_S = 8.0
"""Scraped history before the upgrade starts (the liveness check's pre-migration window)."""

GATE: dict[str, Any] = {
    "slos": [
        {"name": "availability", "objective": 0.99},
        {
            "name": "latency",
            "objective": 0.99,
            "sli": {"template": "istio-latency", "threshold_ms": 250},
        },
    ],
    "warmup_seconds": WARMUP_S,
    "interval_seconds": INTERVAL_S,
    "soak_seconds": 6,
    "max_soak_seconds": 12,
    "short_window_seconds": 4,
    "on_inconclusive": "wait_for_approval",
}

Expect = Literal["FAIL", "PASS", "INCONCLUSIVE"]


@dataclass
class Case:
    name: str
    expect: Expect
    """FAIL: a bad revision. PASS: a good one. INCONCLUSIVE: the gate must not pass it (too
    little traffic, no Prometheus, an incident that is not the canary's)."""
    faults: list[dict[str, Any]] = field(default_factory=list)
    cand: dict[str, Any] = field(default_factory=lambda: {"name": "api", "rps": 40})
    """The canary namespace's workload."""
    extra: list[dict[str, Any]] = field(default_factory=list)
    """More workloads in ``cand``."""
    prometheus_down: bool = False
    must_pass_batch: bool = False
    """The canary batch must pass (not wait for an approval)."""
    why: str = ""


def _new(**fault: Any) -> dict[str, Any]:
    return {"namespaces": ["cand"], "revision": NEW, **fault}


CASES = [
    Case("healthy", "PASS", why="a good revision"),
    Case("5xx spike", "FAIL", [_new(error_ratio=0.05)], why="5% HTTP 503 in one namespace"),
    Case("response code 0", "FAIL", [_new(reset_ratio=0.05)], why="5% resets (code 0)"),
    Case(
        "gRPC in HTTP 200",
        "FAIL",
        [_new(grpc_error_ratio=0.05)],
        cand={"name": "api", "rps": 40, "protocol": "grpc"},
        why="5% gRPC UNAVAILABLE over HTTP 200",
    ),
    Case("latency", "FAIL", [_new(latency_ms=300)], why="+300 ms, threshold 250 ms"),
    Case("silent drop", "FAIL", [_new(traffic_factor=0.0)], why="traffic gone, no errors"),
    Case("xDS rejects", "FAIL", [{"revision": NEW, "xds_rejects_per_s": 1.0}], why="1 reject/s"),
    Case(
        "global incident",
        "INCONCLUSIVE",
        [{"error_ratio": 0.2}],
        why="20% 5xx everywhere (burn 20x), old revision included: not the canary's fault",
    ),
    Case(
        "baseline-only incident",
        "PASS",
        [{"namespaces": ["old-a", "old-b"], "revision": OLD, "error_ratio": 0.05}],
        why="5% 5xx on the old revision only",
    ),
    Case(
        "low traffic",
        "INCONCLUSIVE",
        cand={"name": "api", "rps": 0.5},
        why="0.5 req/s: below the rule of three",
    ),
    Case("Prometheus down", "INCONCLUSIVE", prometheus_down=True, why="no Prometheus"),
    Case(
        "idle namespace",
        "PASS",
        cand={"name": "worker", "rps": 0, "calls": ["old-a/api"]},
        must_pass_batch=True,
        why="no inbound before or after (a batch worker): outbound and readiness",
    ),
]


def scenario(case: Case) -> dict[str, Any]:
    """Three old-revision namespaces around the canary ``cand``; ``front`` calls them all."""

    def ns(name: str, workloads: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "labels": {"istio.io/rev": OLD}, "workloads": workloads}

    calls = ["old-a/api", "old-b/api"]
    if case.cand.get("rps", 0) > 0:
        calls.insert(0, f"cand/{case.cand['name']}")
    cand = {"replicas": 2, "latency_ms": 20, **case.cand}
    return {
        "name": f"detection-{case.name.replace(' ', '-').lower()}",
        "cluster_name": "demo",
        "timings": {"pod_start_s": 0.2, "pod_ready_s": 0.2, "istiod_ready_s": 1.0},
        "revisions": [{"version": "1.30.3"}],
        "tags": {"default": OLD},
        "namespaces": [
            ns("front", [{"name": "web", "replicas": 2, "rps": 60, "calls": calls}]),
            ns("cand", [cand, *case.extra]),
            ns("old-a", [{"name": "api", "replicas": 2, "rps": 40, "latency_ms": 20}]),
            ns("old-b", [{"name": "api", "replicas": 2, "rps": 40, "latency_ms": 20}]),
        ],
        "faults": {"traffic": case.faults},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec(prometheus_url: str, bundle: str) -> Any:
    from istio_upgrade.models import UpgradeSpec

    return UpgradeSpec.model_validate(
        {
            "installer": {"bundle_yaml": bundle},
            "cluster": {"name": "demo", "context": "sandbox", "prometheus_url": prometheus_url},
            "target": {"version": "1.31.0"},
            # The canary alone first, gated against the namespaces still on the old revision.
            "migration": {
                "canary": ["cand"],
                "growth_factor": 10,
                "max_batch_size": 10,
                "rollout_timeout_seconds": 30,
            },
            "gate": dict(GATE),
            "cleanup": {"grace_seconds": 1},
        }
    )


@dataclass
class Outcome:
    case: str
    expect: Expect
    verdict: str
    seconds: float | None
    """From the batch's Ready to the start of the evaluation that decided (workflow time)."""
    wall_seconds: float | None
    """From the bench seeing the batch Ready to it seeing the verdict (0.2 s polling)."""
    evaluations: int
    batch_status: str
    correct: bool
    false_fail: bool
    false_pass: bool
    in_time: bool | None
    reason: str
    why: str
    budget_spent: dict[str, float] = field(default_factory=dict)
    """SLO name → share of the period's error budget the canary batch spent since Ready."""
    budget_total: dict[str, float] = field(default_factory=dict)
    """SLO name → the upgrade's total so far (``Progress.budget_spent.total``)."""


def judge(case: Case, verdict: str, seconds: float | None, status: str) -> dict[str, Any]:
    """Whether ``verdict`` is right for ``case``, and the false FAIL / false PASS flags."""
    false_fail = verdict == "FAIL" and case.expect != "FAIL"
    false_pass = verdict == "PASS" and case.expect != "PASS"
    correct = verdict == case.expect
    in_time: bool | None = None
    if case.expect == "FAIL":
        # Half a second of slack: the batch's Ready is recorded before its soak starts.
        in_time = verdict == "FAIL" and seconds is not None and seconds <= HORIZON + 0.5
    if case.must_pass_batch and status != "passed":
        correct = False
    return {
        "correct": correct,
        "false_fail": false_fail,
        "false_pass": false_pass,
        "in_time": in_time,
    }


async def run_case(client: Any, case: Case, workdir: Path, bundle: str) -> Outcome:
    from istio_sandbox.server import SandboxProcess
    from istio_upgrade.devenv import PrometheusServer, ScrapeTarget
    from istio_upgrade.models.progress import Progress
    from istio_upgrade.worker import build_worker
    from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

    slug = case.name.replace(" ", "-").lower()
    root = workdir / slug
    root.mkdir(parents=True, exist_ok=True)
    path = root / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario(case), sort_keys=False))
    sandbox = SandboxProcess(path, workdir=root)
    await asyncio.to_thread(sandbox.start)
    prometheus = PrometheusServer([ScrapeTarget(address=sandbox.address)])
    try:
        await prometheus.start()
        await prometheus.wait_for_series(
            'istio_requests_total{destination_workload_namespace="old-a"}', timeout_s=30
        )
        await asyncio.sleep(PRE_TRAFFIC_S)
        url = f"http://127.0.0.1:{_free_port()}" if case.prometheus_down else prometheus.url
        task_queue = f"detection-{uuid.uuid4().hex[:8]}"
        worker = build_worker(client, task_queue=task_queue, kubeconfig=str(sandbox.kubeconfig))
        async with worker:
            handle = await client.start_workflow(
                IstioCanaryUpgrade.run,
                spec(url, bundle),
                id=f"detection-{slug}-{uuid.uuid4().hex[:6]}",
                task_queue=task_queue,
            )
            try:
                return await _follow(handle, case, Progress, IstioCanaryUpgrade)
            finally:
                with contextlib.suppress(Exception):  # already ended
                    await handle.terminate("detection case done")
    finally:
        await prometheus.stop()
        await asyncio.to_thread(sandbox.stop)


async def _follow(handle: Any, case: Case, progress_type: Any, workflow: Any) -> Outcome:
    """Watch the canary batch until a verdict, a pass, a wait or the horizon."""
    seen: dict[int, Any] = {}
    ready_wall: float | None = None
    decided: Any = None
    decided_wall: float | None = None
    status = "pending"
    budget: dict[str, float] = {}
    total: dict[str, float] = {}
    ready_at: datetime | None = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        progress = await handle.query(workflow.progress)
        batch = progress.batches[0] if progress.batches else None
        if batch is not None:
            status = batch.status
            budget = dict(batch.budget_spent) or budget
            if progress.budget_spent is not None:
                total = dict(progress.budget_spent.total) or total
            if batch.ready_at is not None and ready_wall is None:
                ready_wall, ready_at = time.monotonic(), batch.ready_at
            for result in batch.gate_results:
                seen.setdefault(result.sequence, result)
            for seq in sorted(seen):
                if decided is None and seen[seq].verdict in ("FAIL", "PASS"):
                    decided, decided_wall = seen[seq], time.monotonic()
        if decided is not None and (
            decided.verdict == "FAIL" or not case.must_pass_batch or status == "passed"
        ):
            break
        if status in ("passed", "failed", "rolling_back", "rolled_back"):
            break
        if progress.waiting_for or len(seen) >= MAX_EVALUATIONS:
            break
        await asyncio.sleep(0.2)
    verdict = decided.verdict if decided is not None else "INCONCLUSIVE"
    last = decided or (seen[max(seen)] if seen else None)
    seconds = (
        round((decided.evaluated_at - ready_at).total_seconds(), 2)
        if decided is not None and ready_at is not None
        else None
    )
    wall = (
        round(decided_wall - ready_wall, 2)
        if decided_wall is not None and ready_wall is not None
        else None
    )
    reason = "; ".join(last.reasons)[:240] if last is not None else "no evaluation"
    flags = judge(case, verdict, seconds, status)
    return Outcome(
        case=case.name,
        expect=case.expect,
        verdict=verdict,
        seconds=seconds,
        wall_seconds=wall,
        evaluations=len(seen),
        batch_status=status,
        reason=reason,
        why=case.why,
        budget_spent=budget,
        budget_total=total,
        **flags,
    )


async def run(selected: list[Case], parallel: int) -> dict[str, Any]:
    from istio_upgrade.devenv import start_dev_server
    from istio_upgrade.devenv.bundles import revision_bundle

    server = await start_dev_server(ui=False)
    bundle = revision_bundle("1.31.0", NEW)
    workdir = Path(tempfile.mkdtemp(prefix="istio-upgrade-detection-"))
    limit = asyncio.Semaphore(parallel)
    started = time.monotonic()

    async def one(case: Case) -> Outcome:
        async with limit:
            try:
                return await run_case(server.env.client, case, workdir, bundle)
            except Exception as exc:  # a broken case must not hide the others
                return Outcome(
                    case.name,
                    case.expect,
                    "ERROR",
                    None,
                    None,
                    0,
                    "?",
                    False,
                    False,
                    False,
                    None,
                    repr(exc)[:240],
                    case.why,
                )

    try:
        outcomes = await asyncio.gather(*(one(c) for c in selected))
    finally:
        await server.shutdown()
    bad = [o for o in outcomes if o.expect == "FAIL"]
    return {
        "benchmark": "detection",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "gate": GATE,
        "horizon_s": HORIZON,
        "parallel_cases": parallel,
        "wall_s": round(time.monotonic() - started, 1),
        "cases": [asdict(o) for o in outcomes],
        "summary": {
            "cases": len(outcomes),
            "correct": sum(o.correct for o in outcomes),
            "false_fail": sum(o.false_fail for o in outcomes),
            "false_pass": sum(o.false_pass for o in outcomes),
            "bad_cases": len(bad),
            "bad_failed_in_time": sum(bool(o.in_time) for o in bad),
            "slowest_fail_s": max(
                (o.seconds or 0.0 for o in bad if o.verdict == "FAIL"), default=None
            ),
        },
    }


def table(document: dict[str, Any]) -> str:
    """A markdown table of the cases, for the terminal and ``docs/benchmarks.md``."""
    lines = [
        "| case | expected | verdict | s from Ready | evaluations | right "
        "| false FAIL | false PASS |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for c in document["cases"]:
        seconds = "-" if c["seconds"] is None else f"{c['seconds']:.1f}"
        lines.append(
            f"| {c['case']} | {c['expect']} | {c['verdict']} | {seconds} | {c['evaluations']} "
            f"| {'yes' if c['correct'] else 'NO'} | {int(c['false_fail'])} "
            f"| {int(c['false_pass'])} |"
        )
    s = document["summary"]
    lines.append(
        f"\n{s['correct']}/{s['cases']} right; false FAIL {s['false_fail']}, false PASS "
        f"{s['false_pass']}; {s['bad_failed_in_time']}/{s['bad_cases']} bad cases FAILed within "
        f"warm-up + 2 intervals ({document['horizon_s']:g} s; slowest {s['slowest_fail_s']} s)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--case", action="append", help="run only these cases (by name)")
    parser.add_argument("--parallel", type=int, default=2, help="cases run at once")
    args = parser.parse_args(argv)
    selected = [c for c in CASES if not args.case or c.name in args.case]
    document = asyncio.run(run(selected, max(1, args.parallel)))
    print(table(document))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    s = document["summary"]
    ok = s["false_fail"] == 0 and s["false_pass"] == 0 and s["correct"] == s["cases"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
