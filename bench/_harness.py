"""Shared pieces of the benchmarks: scenario shape, lower bound, the stack, the figures.

The pure parts (:func:`scenario_document`, :func:`rollout_seconds`, :func:`lower_bound`,
:func:`fit_exponent`, :func:`history_figures`) have unit tests; the rest starts real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import yaml

SOURCE_VERSION, SOURCE_REVISION = "1.30.3", "1-30-3"
TARGET_VERSION, TARGET_REVISION = "1.31.0", "1-31-0"

# The sandbox's timings (those of the shipped `large` scenario and `Timings`' defaults).
TIMINGS: dict[str, float] = {
    "pod_start_s": 0.5,
    "pod_ready_s": 0.5,
    "pod_terminate_s": 0.2,
    "istiod_ready_s": 2.0,
    "controller_period_s": 0.1,
}

# The demo's short gate (istio_upgrade/cli/demo.py), and its plan shape at scale.
GATE: dict[str, Any] = {
    "slos": [{"name": "availability", "objective": 0.99, "burn_rate_threshold": 2.5}],
    "warmup_seconds": 2.5,
    "soak_seconds": 8,
    "interval_seconds": 2,
    "max_soak_seconds": 16,
    "short_window_seconds": 8,
    "on_inconclusive": "proceed",
}
MIGRATION: dict[str, Any] = {"first_batch_size": 1, "growth_factor": 2, "max_batch_size": 50}
GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class Shape:
    """A generated mesh: ``namespaces`` x ``deployments`` x ``replicas``."""

    namespaces: int = 200
    deployments: int = 5
    replicas: int = 2
    traffic_namespaces: int | None = None
    """Namespaces that carry traffic (the first ones); None = all. A namespace without any
    traffic is INCONCLUSIVE to the gate, so its batch soaks until ``max_soak_seconds``."""
    rps: float = 10.0

    @property
    def pods(self) -> int:
        return self.namespaces * self.deployments * self.replicas

    @property
    def label(self) -> str:
        return f"{self.namespaces}x{self.deployments}x{self.replicas}"


def scenario_document(shape: Shape) -> dict[str, Any]:
    """A sandbox scenario of ``shape``: namespaces ``ns-0000`` … on revision 1-30-3.

    Every namespace uses ``istio.io/rev: 1-30-3`` so the product, the docs procedure and the
    bare loop all do the same thing to it: relabel to the new revision and restart.
    """
    workloads = [
        {"name": f"app-{i}", "replicas": shape.replicas, "rps": shape.rps, "latency_ms": 10}
        for i in range(shape.deployments)
    ]
    generate: dict[str, Any] = {
        "prefix": "ns",
        "count": shape.namespaces,
        "labels": {"istio.io/rev": SOURCE_REVISION},
        "workloads": workloads,
    }
    if shape.traffic_namespaces is not None:
        generate["traffic_namespaces"] = shape.traffic_namespaces
    return {
        "name": f"bench-{shape.label}",
        "description": f"benchmark mesh {shape.label} on revision {SOURCE_REVISION}",
        "cluster_name": "bench",
        "timings": dict(TIMINGS),
        "revisions": [{"version": SOURCE_VERSION}],
        "tags": {"default": SOURCE_REVISION},
        "generate": [generate],
    }


def write_scenario(shape: Shape, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{shape.label}.yaml"
    path.write_text(yaml.safe_dump(scenario_document(shape), sort_keys=False))
    return path


# -- the lower bound ------------------------------------------------------------------------


def _int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = float(value.rstrip("%")) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def rollout_seconds(
    replicas: int,
    *,
    start_s: float,
    ready_s: float,
    terminate_s: float,
    max_surge: int | str = "25%",
    max_unavailable: int | str = "25%",
) -> float:
    """Seconds from a restart until ``kubectl rollout status`` reports the Deployment done.

    Replays the sandbox's Deployment controller (``istio_sandbox/controllers/deployments.py``,
    kube-controller-manager's rules) with a controller that reacts at once: the new
    ReplicaSet grows within ``maxSurge``, old pods go within ``maxUnavailable``, a new pod is
    available ``start_s + ready_s`` after it is created, an old one is gone ``terminate_s``
    after it is scaled away, and the rollout is complete when every replica is updated and
    available and no old pod is left (``status.replicas == updatedReplicas``).
    """
    if replicas <= 0:
        return 0.0
    surge = _int_or_percent(max_surge, replicas, round_up=True)
    unavailable = _int_or_percent(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    up = start_s + ready_s
    new_ready: list[float] = []  # when each new pod becomes available
    old, old_gone = replicas, 0.0
    now = 0.0
    min_available = replicas - unavailable
    for _ in range(100 * replicas + 100):
        available_new = sum(1 for t in new_ready if t <= now)
        # Scale the new ReplicaSet up within maxSurge.
        room = min(replicas + surge - (len(new_ready) + old), replicas - len(new_ready))
        new_ready.extend([now + up] * max(0, room))
        # Scale old pods down within maxUnavailable (every old pod is available).
        budget = len(new_ready) + old - min_available - (len(new_ready) - available_new)
        cut = min(old, max(0, budget), max(0, available_new + old - min_available))
        if cut:
            old -= cut
            old_gone = now + terminate_s
        if len(new_ready) == replicas and old == 0:
            return max(max(new_ready), old_gone)
        if room > 0 or cut > 0:
            continue  # the controller reconciles again at once after each change
        pending = [t for t in new_ready if t > now]
        if not pending:
            raise RuntimeError("rollout model is stuck")
        now = min(pending)
    raise RuntimeError("rollout model did not converge")


def plan_batches(namespaces: int, first: int, growth: float, largest: int) -> list[int]:
    """Batch sizes of the automatic plan: ``first``, then x``growth``, capped at ``largest``."""
    sizes: list[int] = []
    size, left = float(first), namespaces
    while left > 0:
        n = min(left, max(1, min(largest, round(size))))
        sizes.append(n)
        left -= n
        size *= growth
    return sizes


@dataclass
class LowerBound:
    """What the sandbox's timing model and the gate's waits cannot go below."""

    install_ready_s: float
    rollout_s: float
    """One batch's slowest rollout (all of a batch's Deployments roll at once)."""
    warmup_s: float
    soak_s: float
    """Soak as the gate ends it: the first evaluation at or after ``soak_seconds``."""
    grace_s: float
    batches: int
    total_s: float = 0.0

    def __post_init__(self) -> None:
        per_batch = self.rollout_s + self.warmup_s + self.soak_s
        self.total_s = round(self.install_ready_s + self.batches * per_batch + self.grace_s, 3)


def lower_bound(
    *,
    replicas: int,
    batches: int,
    gate: dict[str, Any],
    timings: dict[str, float],
    grace_s: float,
) -> LowerBound:
    """Install-ready time + per batch (slowest rollout + warm-up + soak) + cleanup grace."""
    interval = float(gate["interval_seconds"])
    soak = math.ceil(float(gate["soak_seconds"]) / interval - 1e-9) * interval
    return LowerBound(
        # istiod-<rev>: created, then Running after pod_start_s, Ready after istiod_ready_s.
        install_ready_s=timings["pod_start_s"] + timings["istiod_ready_s"],
        rollout_s=rollout_seconds(
            replicas,
            start_s=timings["pod_start_s"],
            ready_s=timings["pod_ready_s"],
            terminate_s=timings["pod_terminate_s"],
        ),
        warmup_s=float(gate["warmup_seconds"]),
        soak_s=soak,
        grace_s=grace_s,
        batches=batches,
    )


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Slope of the least-squares line through ``(log x, log y)``: y ∝ x^slope.

    1 is linear, 0 constant. None with fewer than two usable points (y must be > 0).
    """
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({p[0] for p in points}) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    cov = sum((p[0] - mx) * (p[1] - my) for p in points)
    return round(cov / var, 3)


# -- the machine ----------------------------------------------------------------------------


def loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    return []


def machine() -> dict[str, Any]:
    """nproc, RAM, CPU model, kernel, Python, and the load when the run began."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": os.cpu_count(),
        "ram_gb": ram_gb,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": loadavg(),
    }


def code_state() -> dict[str, Any]:
    """The commit measured, and the product files changed in the work tree beyond it (the
    checkout is shared: a run measures what is on disk)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--", "istio_upgrade", "istio_sandbox").split("\n")
        if line.strip()
    ]
    commit = git("rev-parse", "--short", "HEAD").strip()
    return {"commit": commit, "uncommitted_product_files": changed}


def under_load(load: Sequence[float], nproc: int | None) -> bool:
    """Whether something else kept the machine busy: 1-minute load above a third of the cores."""
    return bool(load) and load[0] > max(1, nproc or 1) / 3


# -- the worker process ---------------------------------------------------------------------


@dataclass
class ProcessFigures:
    peak_rss_mb: float
    cpu_s: float


def process_figures(pid: int) -> ProcessFigures:
    """``VmHWM`` (peak resident set) and user + system CPU of a live process, from /proc."""
    hwm_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm_kb = int(line.split()[1])
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ProcessFigures(
        peak_rss_mb=round(hwm_kb / 1024, 1), cpu_s=round(ticks / os.sysconf("SC_CLK_TCK"), 2)
    )


class WorkerProcess:
    """``python -m istio_upgrade.worker`` in a child process (as in production: one process)."""

    def __init__(self, address: str, kubeconfig: Path, log: Path) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "KUBECONFIG": str(kubeconfig),
            "LOG_LEVEL": "WARNING",
            "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "istio_upgrade.worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def figures(self) -> ProcessFigures:
        return process_figures(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- Prometheus's own counters --------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def prometheus_query_counts(metrics_text: str) -> dict[str, float]:
    """Queries Prometheus has answered, from its own ``/metrics``.

    ``api_queries``: HTTP requests to ``/api/v1/query`` and ``/api/v1/query_range``;
    ``engine_queries``: ``prometheus_engine_query_duration_seconds_count{slice="inner_eval"}``.
    """
    out = {"api_queries": 0.0, "engine_queries": 0.0}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        if name == "prometheus_http_requests_total" and (
            'handler="/api/v1/query"' in labels or 'handler="/api/v1/query_range"' in labels
        ):
            out["api_queries"] += float(value)
        elif name == "prometheus_engine_query_duration_seconds_count" and (
            'slice="inner_eval"' in labels
        ):
            out["engine_queries"] += float(value)
    return out


async def prometheus_counts(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url.rstrip('/')}/metrics")
        response.raise_for_status()
        return prometheus_query_counts(response.text)


# -- the request log ------------------------------------------------------------------------


def restart_patches(entries: Iterable[dict[str, Any]]) -> int:
    """Restarts in a request log: patches of workloads outside ``istio-system``."""
    return sum(
        1
        for e in entries
        if e["verb"] == "patch"
        and e["resource"] in ("deployments", "statefulsets", "daemonsets")
        and e.get("namespace") not in ("", "istio-system")
    )


def request_figures(
    entries: Iterable[dict[str, Any]], migrated: int, restarted: int
) -> dict[str, Any]:
    """Totals, per migrated namespace, beyond one per restarted workload, and by kind."""
    kinds: Counter[str] = Counter()
    namespaced = 0
    total = 0
    for e in entries:
        total += 1
        resource = e["resource"] + (f"/{e['subresource']}" if e.get("subresource") else "")
        kinds[f"{e['verb']} {resource}"] += 1
        if e.get("namespace"):
            namespaced += 1
    per_ns = total / migrated if migrated else None
    beyond = (total - restarted) / migrated if migrated else None
    return {
        "total": total,
        "namespaced": namespaced,
        "cluster_scoped": total - namespaced,
        "per_migrated_namespace": round(per_ns, 2) if per_ns is not None else None,
        "beyond_restarts_per_namespace": round(beyond, 2) if beyond is not None else None,
        "restarted_workloads": restarted,
        "by_kind": dict(kinds.most_common()),
    }


# -- history --------------------------------------------------------------------------------


@dataclass
class EventFacts:
    """What the figures need of one history event (so they are testable without protos)."""

    kind: str
    """``scheduled``, ``completed``, ``timer`` or ``other``."""
    size: int
    activity: str = ""
    scheduled_id: int = 0
    event_id: int = 0
    payload: int = 0
    """Bytes of the activity's input (scheduled) or result (completed)."""


def history_figures(runs: Sequence[Sequence[EventFacts]]) -> dict[str, Any]:
    """Events and bytes per run and per gate evaluation (``measure_gate``).

    Per evaluation: the history one evaluation adds within a batch — the events from one
    ``measure_gate`` scheduled to the next when nothing else was scheduled between them —
    and the activity's own input + result.
    """
    per_run = [{"events": len(r), "bytes": sum(e.size for e in r)} for r in runs]
    gaps_bytes: list[int] = []
    gaps_events: list[int] = []
    payloads: list[int] = []
    activities: Counter[str] = Counter()
    for events in runs:
        scheduled_name = {e.event_id: e.activity for e in events if e.kind == "scheduled"}
        scheduled_payload = {e.event_id: e.payload for e in events if e.kind == "scheduled"}
        last_eval: int | None = None
        other_since = False
        for i, e in enumerate(events):
            if e.kind == "completed" and scheduled_name.get(e.scheduled_id) == "measure_gate":
                payloads.append(scheduled_payload.get(e.scheduled_id, 0) + e.payload)
            if e.kind != "scheduled":
                continue
            activities[e.activity] += 1
            if e.activity == "measure_gate":
                if last_eval is not None and not other_since:
                    gaps_events.append(i - last_eval)
                    gaps_bytes.append(sum(x.size for x in events[last_eval:i]))
                last_eval, other_since = i, False
            else:
                other_since = True
    evaluations = activities.get("measure_gate", 0)
    total_bytes = sum(r["bytes"] for r in per_run)
    return {
        "runs": len(runs),
        "events_total": sum(r["events"] for r in per_run),
        "bytes_total": total_bytes,
        "events_max_run": max((r["events"] for r in per_run), default=0),
        "bytes_max_run": max((r["bytes"] for r in per_run), default=0),
        "per_run": per_run,
        "gate_evaluations": evaluations,
        "bytes_per_evaluation": _median(gaps_bytes),
        "bytes_per_evaluation_max": max(gaps_bytes, default=None),
        "events_per_evaluation": _median(gaps_events),
        "gate_payload_bytes_per_evaluation": _median(payloads),
        "gate_payload_bytes_max": max(payloads, default=None),
        "gate_payload_bytes_each": payloads,
        "activities": dict(activities.most_common()),
    }


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def fetch_histories(client: Any, workflow_id: str, first_run_id: str) -> list[Any]:
    """Every run's history of an upgrade, following continue-as-new from the first run."""
    from temporalio.api.enums.v1 import EventType

    histories = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1] if history.events else None
        run_id = None
        if last is not None and (
            last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        ):
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return histories


def event_facts(history: Any) -> list[EventFacts]:
    """:class:`EventFacts` of a ``temporalio.client.WorkflowHistory``."""
    out = []
    for event in history.events:
        facts = EventFacts(kind="other", size=event.ByteSize(), event_id=event.event_id)
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            facts.kind, facts.activity = "scheduled", attrs.activity_type.name
            facts.payload = attrs.input.ByteSize()
        elif event.HasField("activity_task_completed_event_attributes"):
            attrs = event.activity_task_completed_event_attributes
            facts.kind, facts.scheduled_id = "completed", attrs.scheduled_event_id
            facts.payload = attrs.result.ByteSize()
        elif event.HasField("timer_started_event_attributes"):
            facts.kind = "timer"
        out.append(facts)
    return out


async def sample_queries(url: str, samples: list[tuple[float, float]]) -> None:
    """Append ``(unix time, queries answered)`` every 0.25 s until cancelled."""
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                before = time.time()
                response = await http.get(f"{url.rstrip('/')}/metrics")
                counts = prometheus_query_counts(response.text)
                # The counter was read between the request and the answer: stamp the start
                # as an upper bound of what it counted before.
                samples.append((before, counts["api_queries"]))
            await asyncio.sleep(0.25)


def activity_windows(histories: Sequence[Any], activity: str) -> list[tuple[float, float]]:
    """``(scheduled, closed)`` unix times of every run of ``activity``."""
    out = []
    for history in histories:
        scheduled: dict[int, float] = {}
        for event in history.events:
            at = event.event_time.ToDatetime().replace(tzinfo=UTC).timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == activity:
                    scheduled[event.event_id] = at
            elif event.HasField("activity_task_completed_event_attributes"):
                began = scheduled.pop(
                    event.activity_task_completed_event_attributes.scheduled_event_id, None
                )
                if began is not None:
                    out.append((began, at))
    return out


def queries_in_windows(
    samples: Sequence[tuple[float, float]], windows: Sequence[tuple[float, float]]
) -> list[float]:
    """Per window: the counter's last sample before it began to its first after it closed."""
    out = []
    for began, closed in windows:
        before = [v for t, v in samples if t <= began]
        after = [v for t, v in samples if t >= closed]
        if before and after:
            out.append(after[0] - before[-1])
    return out


def activity_durations(histories: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per activity type: count and seconds from scheduled to closed; timers likewise."""
    out: dict[str, dict[str, Any]] = {}
    for history in histories:
        scheduled: dict[int, tuple[str, float]] = {}
        timers: dict[int, float] = {}
        for event in history.events:
            at = event.event_time.ToDatetime().replace(tzinfo=UTC).timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = (name, at)
                continue
            if event.HasField("timer_started_event_attributes"):
                timers[event.event_id] = at
                continue
            closed = None
            for attr in (
                "activity_task_completed_event_attributes",
                "activity_task_failed_event_attributes",
                "activity_task_timed_out_event_attributes",
                "activity_task_canceled_event_attributes",
            ):
                if event.HasField(attr):
                    closed = getattr(event, attr).scheduled_event_id
            if closed is not None and closed in scheduled:
                name, began = scheduled.pop(closed)
                row = out.setdefault(name, {"count": 0, "seconds": 0.0, "each": []})
                row["count"] += 1
                row["seconds"] = round(row["seconds"] + at - began, 3)
                row["each"].append(round(at - began, 2))
            if event.HasField("timer_fired_event_attributes"):
                began = timers.pop(event.timer_fired_event_attributes.started_event_id, at)
                row = out.setdefault("(timers)", {"count": 0, "seconds": 0.0})
                row["count"] += 1
                row["seconds"] = round(row["seconds"] + at - began, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["seconds"]))


# -- one upgrade by the product -------------------------------------------------------------


@dataclass
class Options:
    """How a benchmark runs an upgrade."""

    shape: Shape = field(default_factory=Shape)
    workdir: Path = Path("/tmp/istio-upgrade-bench")
    timeout_s: float = 3600.0
    pre_traffic_s: float = 12.0
    """Prometheus scrapes this long before the upgrade starts (the liveness check compares the
    batch with its traffic before the migration)."""


def upgrade_spec(cluster: Any, bundle: Path) -> Any:
    from istio_upgrade.models import ClusterRef, UpgradeSpec

    return UpgradeSpec.model_validate(
        {
            "cluster": ClusterRef(
                name=cluster.name, context=cluster.name, prometheus_url=cluster.prometheus_url
            ),
            "target": {"version": TARGET_VERSION},
            "installer": {"bundle_path": str(bundle)},
            "migration": dict(MIGRATION),
            "gate": dict(GATE),
            "cleanup": {"grace_seconds": GRACE_SECONDS},
        }
    )


def write_bundle(directory: Path) -> Path:
    from istio_upgrade.devenv.bundles import revision_bundle

    path = directory / f"istiod-{TARGET_REVISION}.yaml"
    path.write_text(revision_bundle(TARGET_VERSION, TARGET_REVISION))
    return path


async def wait_worker_polling(client: Any, deadline_s: float = 60.0) -> None:
    from istio_upgrade.cli.workers import has_workers
    from istio_upgrade.client import TASK_QUEUE

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if await has_workers(client, TASK_QUEUE):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no worker polled the task queue within {deadline_s:g}s")


async def run_product(options: Options, name: str = "ours") -> dict[str, Any]:
    """One upgrade by the product on a fresh sandbox of ``options.shape``; every figure.

    Never raises for the upgrade's own failure: the reason goes into ``error``.
    """
    from istio_upgrade.client import start_upgrade, workflow_id
    from istio_upgrade.devenv.stack import DevStack

    shape = options.shape
    run_dir = options.workdir / f"{name}-{shape.label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = write_scenario(shape, run_dir)
    bundle = write_bundle(run_dir)
    out: dict[str, Any] = {
        "shape": asdict(shape),
        "pods": shape.pods,
        "error": None,
        "code": code_state(),
    }
    setup = time.monotonic()
    async with DevStack(run_dir, ui=False) as stack:
        await stack.start_temporal()
        assert stack.temporal is not None
        cluster = await stack.add_cluster("bench", scenario)
        worker = WorkerProcess(stack.temporal.address, stack.kubeconfig, run_dir / "worker.log")
        worker.start()
        try:
            await wait_worker_polling(stack.client)
            await asyncio.sleep(max(0.0, options.pre_traffic_s - (time.monotonic() - setup)))
            out["setup_s"] = round(time.monotonic() - setup, 1)
            await asyncio.to_thread(cluster.sandbox.reset_stats)
            prom_before = await prometheus_counts(cluster.prometheus_url)
            samples: list[tuple[float, float]] = []
            sampler = asyncio.create_task(sample_queries(cluster.prometheus_url, samples))
            cpu_before = worker.figures().cpu_s
            spec = upgrade_spec(cluster, bundle)
            upgrade_id = workflow_id(spec)
            load_before = loadavg()
            started = time.monotonic()
            handle = await start_upgrade(stack.client, spec)
            first_run = handle.first_execution_run_id or handle.result_run_id or ""
            result = None
            try:
                result = await asyncio.wait_for(handle.result(), options.timeout_s)
            except Exception as error:  # the figures of a failed run are figures too
                out["error"] = f"{type(error).__name__}: {error}"
                cause = getattr(error, "cause", None)
                if cause is not None:
                    out["error"] += f" (cause: {type(cause).__name__}: {cause})"
            wall = time.monotonic() - started
            out["wall_s"] = round(wall, 2)
            out["loadavg"] = {"before": load_before, "after": loadavg()}
            out["under_load"] = under_load(load_before, os.cpu_count()) or under_load(
                out["loadavg"]["after"], os.cpu_count()
            )
            figures = worker.figures()
            out["worker"] = {
                "peak_rss_mb": figures.peak_rss_mb,
                "cpu_s": round(figures.cpu_s - cpu_before, 2),
                "cpu_s_with_startup": figures.cpu_s,
            }
            await asyncio.sleep(0.5)  # one sample after the last evaluation
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            prom_after = await prometheus_counts(cluster.prometheus_url)
            progress = None
            with contextlib.suppress(Exception):
                from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

                progress = await asyncio.wait_for(
                    stack.client.get_workflow_handle(upgrade_id).query(IstioCanaryUpgrade.progress),
                    30,
                )
            out["outcome"] = getattr(result, "outcome", None)
            out.update(
                await _figures(
                    stack.client,
                    cluster,
                    upgrade_id,
                    first_run,
                    progress,
                    prom_before,
                    prom_after,
                    samples,
                    shape,
                    wall,
                    run_dir,
                )
            )
        finally:
            worker.stop()
    return out


async def _figures(
    client: Any,
    cluster: Any,
    upgrade_id: str,
    first_run: str,
    progress: Any,
    prom_before: dict[str, float],
    prom_after: dict[str, float],
    samples: list[tuple[float, float]],
    shape: Shape,
    wall: float,
    run_dir: Path,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    histories = await fetch_histories(client, upgrade_id, first_run)
    for i, h in enumerate(histories):
        with contextlib.suppress(Exception):  # kept for reading, never needed by the figures
            (run_dir / f"history-{i}.json").write_text(h.to_json())
    history = history_figures([event_facts(h) for h in histories])
    out["history"] = history
    out["step_seconds"] = activity_durations(histories)
    batches = _progress_batches(progress)
    out["batches"] = batches
    # The plan's namespaces per batch, for the baselines (dropped from the JSON).
    out["_plan"] = [list(b.namespaces) for b in getattr(progress, "batches", None) or []]
    sizes = [b["namespaces"] for b in batches] or plan_batches(
        shape.namespaces,
        MIGRATION["first_batch_size"],
        MIGRATION["growth_factor"],
        MIGRATION["max_batch_size"],
    )
    out["batch_sizes"] = sizes
    bound = lower_bound(
        replicas=shape.replicas,
        batches=len(sizes),
        gate=GATE,
        timings=TIMINGS,
        grace_s=GRACE_SECONDS,
    )
    out["lower_bound"] = asdict(bound)
    out["lower_bound_s"] = bound.total_s
    out["overhead_ratio"] = round(wall / bound.total_s, 3)
    out["overhead_s"] = round(wall - bound.total_s, 2)
    # The same bound where the gate's policy, not physics, sets a batch's soak: a batch that
    # ended INCONCLUSIVE (idle namespaces) soaks until max_soak_seconds by configuration.
    inconclusive = sum(1 for b in batches if b.get("last_verdict") == "INCONCLUSIVE")
    interval = float(GATE["interval_seconds"])
    max_soak = math.ceil(float(GATE["max_soak_seconds"]) / interval - 1e-9) * interval
    gate_bound = bound.total_s + inconclusive * (max_soak - bound.soak_s)
    out["inconclusive_batches"] = inconclusive
    out["lower_bound_gate_s"] = round(gate_bound, 3)
    out["overhead_ratio_vs_gate_policy"] = round(wall / gate_bound, 3)
    migrated = sum(b["namespaces"] for b in batches if b["status"] == "passed")
    entries, _ = await asyncio.to_thread(cluster.sandbox.requests, 0)
    restarted = restart_patches(entries)
    out["migrated_namespaces"] = migrated
    out["kube_requests"] = request_figures(entries, migrated or shape.namespaces, restarted)
    evaluations = history["gate_evaluations"]
    api = prom_after["api_queries"] - prom_before["api_queries"]
    engine = prom_after["engine_queries"] - prom_before["engine_queries"]
    out["promql"] = {
        "api_queries_total": api,
        "engine_queries_total": engine,
        "gate_evaluations": evaluations,
        # Every query of the run over the evaluations: an upper bound (precheck and the
        # old revision's drain check are in the total too).
        "api_queries_per_evaluation_upper": round(api / evaluations, 2) if evaluations else None,
        "engine_queries_per_evaluation_upper": round(engine / evaluations, 2)
        if evaluations
        else None,
    }
    per_eval = queries_in_windows(samples, activity_windows(histories, "measure_gate"))
    out["promql"].update(
        {
            # Prometheus's counter sampled every 0.25 s, attributed to each evaluation's
            # activity window (evaluations are at least one interval apart).
            "queries_per_evaluation": _median(per_eval),
            "queries_per_evaluation_min": min(per_eval, default=None),
            "queries_per_evaluation_max": max(per_eval, default=None),
            "queries_per_evaluation_each": per_eval,
            "queries_outside_evaluations": api - sum(per_eval) if per_eval else None,
        }
    )
    return out


def _progress_batches(progress: Any) -> list[dict[str, Any]]:
    rows = []
    for b in getattr(progress, "batches", None) or []:
        started, ready, finished = b.started_at, b.ready_at, b.finished_at
        verdicts = [g.verdict for g in b.gate_results]
        rows.append(
            {
                "index": b.index,
                "namespaces": len(b.namespaces),
                "status": b.status,
                "migrate_s": _span(started, ready),
                "soak_s": _span(ready, finished),
                "gate_results_kept": len(verdicts),
                "last_verdict": verdicts[-1] if verdicts else None,
                "verdicts": dict(Counter(verdicts)),
            }
        )
    return rows


def _span(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    return round(float((b - a).total_seconds()), 2)


# -- output ---------------------------------------------------------------------------------


def print_table(title: str, rows: Sequence[tuple[str, Any, Any]]) -> None:
    """``figure | measured | target`` rows."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    for name, value, target in rows:
        table.add_row(name, _fmt(value), "" if target is None else str(target))
    Console().print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_json(path: Path | None, document: dict[str, Any]) -> None:
    text = json.dumps(_public(document), indent=2, default=str)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def _public(value: Any) -> Any:
    """``value`` without keys starting with ``_`` (working data such as namespace lists)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def product_rows(fig: dict[str, Any], *, at_scale: bool) -> list[tuple[str, Any, Any]]:
    """The table rows of one product run, with the issue's targets."""
    if fig.get("wall_s") is None:
        return [("error", fig.get("error"), None)]
    req = fig.get("kube_requests", {})
    hist = fig.get("history", {})
    prom = fig.get("promql", {})
    worker = fig.get("worker", {})
    return [
        ("outcome", fig.get("outcome") or fig.get("error"), "SUCCEEDED"),
        ("namespaces / pods", f"{fig['shape']['namespaces']} / {fig['pods']}", None),
        ("batches", len(fig.get("batch_sizes", [])), None),
        ("wall_s", fig.get("wall_s"), None),
        ("lower_bound_s", fig.get("lower_bound_s"), None),
        ("overhead_ratio", fig.get("overhead_ratio"), "≤ 1.15" if at_scale else "≤ 1.05"),
        ("kube requests", req.get("total"), None),
        ("  per migrated namespace", req.get("per_migrated_namespace"), None),
        ("  beyond restarts, per namespace", req.get("beyond_restarts_per_namespace"), "≤ 8"),
        ("PromQL queries per evaluation", prom.get("queries_per_evaluation"), "constant"),
        (
            "  min / max",
            f"{prom.get('queries_per_evaluation_min')} / {prom.get('queries_per_evaluation_max')}",
            None,
        ),
        ("gate evaluations", hist.get("gate_evaluations"), None),
        ("history events (all runs)", hist.get("events_total"), None),
        ("history events (largest run)", hist.get("events_max_run"), "< 10,000"),
        ("history bytes (all runs)", hist.get("bytes_total"), None),
        ("history bytes per evaluation", hist.get("bytes_per_evaluation"), "< 2,048"),
        ("runs (continue-as-new)", hist.get("runs"), None),
        ("worker peak RSS MB", worker.get("peak_rss_mb"), "< 300" if at_scale else None),
        ("worker CPU s", worker.get("cpu_s"), None),
    ]


def run_sync(coro: Any) -> Any:
    from istio_upgrade.devenv.signals import sigterm_cancels

    async def main() -> Any:
        with sigterm_cancels():
            return await coro

    return asyncio.run(main())
