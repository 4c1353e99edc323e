"""One chaos run: an upgrade driven through worker kills, cancels, aborts and API faults.

The worker runs as real processes (``python -m istio_upgrade.worker``), two of them competing
for the task queue, so a SIGKILL is a real crash: its workflow task and activities are retried
by Temporal on the survivor. The sandbox injects API faults (429/500/503/dropped
connections/409) into a share of every request. What happens when is drawn from one seeded
random generator, so a failing run is reproduced by its seed.

After the upgrade ends the faults stop and :func:`check_invariants` reads the cluster and the
history: every managed, injectable workload on exactly one revision (the target after success;
the original labels and revision after a complete rollback), no Deployment restarted twice for
one step, every restart visible in the history, the lock released or explicitly kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from istio_upgrade.activities.discovery import ANNOTATION_RESTART_STAMP
from istio_upgrade.models import AbortRequest
from istio_upgrade.models.progress import Progress
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

SOURCE, TARGET = "1-30-3", "1-31-0"
FAULT_SHARE = 0.10
BEFORE_WRITES = {"PENDING", "VALIDATING", "DISCOVERING", "PLANNING"}
MUTATIONS = (
    "apply_crds",
    "install_revision",
    "relabel_namespaces",
    "label_workloads",
    "restart_workloads",
    "move_tags",
    "uninstall_revision",
)


@dataclass
class Figures:
    """What one run (or a whole chaos session) did and found."""

    runs: int = 0
    worker_kills: int = 0
    cancels: int = 0
    aborts: int = 0
    api_faults: int = 0
    api_requests: int = 0
    disruptions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Why runs ended FAILED (precheck refusals, incomplete rollbacks): read them."""

    def add(self, other: Figures) -> None:
        self.runs += other.runs
        self.worker_kills += other.worker_kills
        self.cancels += other.cancels
        self.aborts += other.aborts
        self.api_faults += other.api_faults
        self.api_requests += other.api_requests
        self.disruptions += other.disruptions
        self.outcomes.update(other.outcomes)
        self.violations += other.violations
        self.failed += other.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "worker_kills": self.worker_kills,
            "cancels": self.cancels,
            "aborts": self.aborts,
            "api_faults": self.api_faults,
            "api_requests": self.api_requests,
            "disruptions": self.disruptions,
            "outcomes": dict(self.outcomes),
            "violations": self.violations,
            "failed": self.failed,
        }


class Workers:
    """Worker processes for one task queue, killed and replaced on demand."""

    def __init__(self, address: str, task_queue: str, kubeconfig: str, logs: Path) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "KUBECONFIG": kubeconfig,
            "LOG_LEVEL": "WARNING",
            "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        }
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        log = open(self.logs / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "istio_upgrade.worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one worker (a crash, no cleanup) and start a replacement."""
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        self.start()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def api_faults(share: float = FAULT_SHARE) -> dict[str, Any]:
    """The sandbox's fault document: ``share`` of requests fail, spread over five kinds."""
    each = share / 5
    return {
        "api": [
            {"kind": "status", "code": 429, "retry_after_s": 0, "probability": each},
            {"kind": "status", "code": 500, "probability": each},
            {"kind": "status", "code": 503, "probability": each},
            {"kind": "drop", "probability": each},
            {"kind": "conflict", "probability": each},
        ]
    }


async def sandbox_json(url: str, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.request(method, f"{url}{path}", json=body)
        response.raise_for_status()
        return response.json()


async def read(url: str, path: str) -> Any:
    """A read of the sandbox's API that survives its own injected faults (none after a run)."""
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(30):
            try:
                response = await http.get(f"{url}{path}")
            except httpx.TransportError:
                continue
            if response.status_code not in {409, 429, 500, 502, 503, 504}:
                return response.json()
        response.raise_for_status()
        return response.json()


async def progress_of(handle: WorkflowHandle[Any, Any]) -> Progress | None:
    try:
        return await handle.query(IstioCanaryUpgrade.progress)
    except Exception:  # no worker right now (killed), or a query racing a kill
        return None


async def drive(
    handle: WorkflowHandle[Any, Any],
    workers: Workers,
    rng: random.Random,
    figures: Figures,
    *,
    kills: int,
    stop: str | None,
    disruptions: Sequence[Callable[[], Awaitable[None]]] = (),
    deadline_s: float = 900.0,
) -> WorkflowExecutionStatus | None:
    """Kill workers, disrupt servers, and cancel or abort at random points until the upgrade
    ends. A disruption (Prometheus or the API server restarted) runs once, at a random time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    stop_at = rng.uniform(3.0, 60.0) if stop else None
    # Kills land before the stop: a run the stop ends early still crashes its workers.
    last_kill = min(25.0, stop_at) if stop_at is not None else 25.0
    kill_at = sorted(rng.uniform(1.0, last_kill) for _ in range(kills))
    disrupt_at = sorted((rng.uniform(3.0, 30.0), i) for i in range(len(disruptions)))
    start = loop.time()
    while loop.time() < end:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return description.status
        elapsed = loop.time() - start
        if disrupt_at and elapsed >= disrupt_at[0][0]:
            await disruptions[disrupt_at.pop(0)[1]]()
            figures.disruptions += 1
            continue
        if kill_at and elapsed >= kill_at[0]:
            kill_at.pop(0)
            workers.kill_one(rng)
            figures.worker_kills += 1
        if stop_at is not None and elapsed >= stop_at:
            stop_at = None
            if stop == "cancel":
                await handle.cancel()
                figures.cancels += 1
            else:
                try:
                    await handle.execute_update(
                        IstioCanaryUpgrade.abort,
                        AbortRequest(reason="chaos", requested_by="chaos"),
                    )
                    figures.aborts += 1
                except Exception:  # refused (past the point of no return) or no worker yet
                    stop_at = elapsed + 2.0
        await asyncio.sleep(0.5)
    return None


async def workload_revisions(url: str, namespaces: list[str]) -> dict[str, set[str | None]]:
    """``namespace/owner`` → the revisions its live pods were injected by (None: no sidecar).

    Keyed by owner, not pod: a restart replaces the pods. A ReplicaSet's pods count for their
    Deployment (the pod-template hash stripped from the name).
    """
    found: dict[str, set[str | None]] = {}
    for pod in (await read(url, "/api/v1/pods")).get("items", []):
        meta = pod["metadata"]
        ns = meta.get("namespace")
        if ns not in namespaces or meta.get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
            continue
        owners = meta.get("ownerReferences") or []
        if not owners:
            continue  # a bare pod: nothing can restart it, the tool reports it apart
        owner = owners[0]
        name = owner["name"]
        if owner.get("kind") == "ReplicaSet":
            name = name.rsplit("-", 1)[0]
        revision = (meta.get("annotations") or {}).get("istio.io/rev")
        found.setdefault(f"{ns}/{name}", set()).add(revision)
    return found


async def restart_stamps(url: str, namespaces: list[str]) -> dict[str, Counter[str]]:
    """Deployment → how many ReplicaSets carry each restart stamp (one per restart)."""
    found: dict[str, Counter[str]] = {}
    for ns in namespaces:
        replicasets = await read(url, f"/apis/apps/v1/namespaces/{ns}/replicasets")
        for rs in replicasets.get("items", []):
            owners = rs["metadata"].get("ownerReferences") or []
            owner = next((o["name"] for o in owners if o.get("kind") == "Deployment"), None)
            template = (rs.get("spec") or {}).get("template") or {}
            stamp = ((template.get("metadata") or {}).get("annotations") or {}).get(
                ANNOTATION_RESTART_STAMP
            )
            if owner and stamp:
                found.setdefault(f"{ns}/Deployment/{owner}", Counter())[stamp] += 1
    return found


def _activity_results(history: Any, activity: str) -> list[dict[str, Any]]:
    scheduled: dict[int, str] = {}
    results: list[dict[str, Any]] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if scheduled.get(attrs.scheduled_event_id) == activity and attrs.result.payloads:
                results.append(json.loads(attrs.result.payloads[0].data))
    return results


async def check_invariants(
    client: Client,
    upgrade_id: str,
    url: str,
    before_labels: dict[str, dict[str, str]],
    namespaces: list[str],
    before_revisions: dict[str, set[str | None]],
) -> list[str]:
    """Every promise of a finished upgrade, as a list of violations (empty: kept)."""
    violations: list[str] = []
    handle = client.get_workflow_handle(upgrade_id)
    description = await handle.describe()
    history = await handle.fetch_history()
    progress = None
    for _ in range(60):
        progress = await progress_of(handle)
        if progress is not None:
            break
        await asyncio.sleep(0.5)
    if progress is None:
        return [f"{upgrade_id}: progress unreadable after the run"]
    phase = progress.phase.value
    status = description.status
    # Cancelled before its first write (discovery, planning): nothing to undo.
    unwritten = status == WorkflowExecutionStatus.CANCELED and phase in BEFORE_WRITES
    complete_rollback = phase == "ROLLED_BACK" or unwritten
    if status == WorkflowExecutionStatus.COMPLETED and phase != "SUCCEEDED":
        violations.append(f"{upgrade_id}: completed in phase {phase}")
    if phase not in {"SUCCEEDED", "ROLLED_BACK", "FAILED"} and not unwritten:
        try:
            await handle.result()
            why = "completed"
        except Exception as error:
            why = repr(getattr(error, "cause", None) or error)
        violations.append(f"{upgrade_id}: ended in phase {phase} ({status}): {why}")

    expected = TARGET if phase == "SUCCEEDED" else SOURCE if complete_rollback else None
    after = await workload_revisions(url, namespaces)
    for key, was in before_revisions.items():
        revisions = after.get(key)
        if not revisions:
            violations.append(f"{upgrade_id}: {key} has no live pod after the run")
            continue
        if len(revisions) != 1:
            # Whatever the outcome: every workload on exactly one revision.
            violations.append(f"{upgrade_id}: {key} on {sorted(map(str, revisions))}")
            continue
        if expected is None:
            continue
        # Only workloads injected by the old revision move; the rest keep what they had.
        want = {expected} if was == {SOURCE} else was
        if revisions != want:
            violations.append(f"{upgrade_id}: {key} on {sorted(map(str, revisions))}, not {want}")
    wrote = any(_activity_results(history, name) for name in MUTATIONS)
    # An incomplete rollback is allowed only when recorded: the errors say what is left, and
    # the lock stays so that no upgrade starts on the cluster (checked below).
    if phase == "FAILED" and wrote and not progress.errors:
        violations.append(f"{upgrade_id}: FAILED after writes without an error recorded")
    if complete_rollback:
        labels = {
            ns["metadata"]["name"]: ns["metadata"].get("labels", {})
            for ns in (await read(url, "/api/v1/namespaces")).get("items", [])
        }
        for ns in namespaces:
            if labels.get(ns) != before_labels.get(ns):
                violations.append(f"{upgrade_id}: {ns} labels {labels.get(ns)} after rollback")

    stamps = await restart_stamps(url, namespaces)
    restarted: set[str] = set()
    for result in _activity_results(history, "restart_workloads"):
        restarted |= set(result.get("restarted", [])) | set(result.get("already_restarted", []))
    for result in _activity_results(history, "label_workloads"):
        restarted |= {line.split(":")[0] for line in result if isinstance(line, str)}
    for workload, counts in stamps.items():
        twice = [s for s, n in counts.items() if n > 1 and s.startswith(upgrade_id)]
        if twice:
            violations.append(f"{upgrade_id}: {workload} restarted twice for {twice}")
        ours = [s for s in counts if s.startswith(upgrade_id)]
        if ours and workload not in restarted:
            violations.append(f"{upgrade_id}: {workload} restarted ({ours}) but not in history")

    lock = await read(url, "/api/v1/namespaces/istio-system/configmaps/istio-upgrade-lock")
    held = lock.get("kind") == "ConfigMap"
    if held and phase != "FAILED":
        violations.append(f"{upgrade_id}: lock still held after {phase}")
    if phase == "FAILED" and wrote and not held:
        violations.append(f"{upgrade_id}: incomplete rollback released the lock")
    if held and not any("lock" in w and "kept" in w for w in progress.warnings):
        violations.append(f"{upgrade_id}: lock kept without saying so")
    return violations


def new_task_queue() -> str:
    return f"chaos-{uuid.uuid4().hex[:8]}"
