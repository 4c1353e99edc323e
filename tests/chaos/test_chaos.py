"""Chaos: upgrades through worker crashes, cancels, aborts and a faulty API server.

The seeded subset runs with the suite (``CHAOS_RUNS`` runs, default 9). The full run:

    CHAOS_RUNS=60 CHAOS_SEED=20261201 CHAOS_REPORT=chaos.json python -m pytest tests/chaos -m chaos

Each run draws from ``random.Random(seed + run)``: how many worker kills (SIGKILL of one of two
competing workers, replaced at once) and when, whether it ends by a cancel or an abort and
when. 10% of the sandbox's API requests fail (429, 500, 503, a dropped connection, 409).
Every run must keep every invariant of ``harness.check_invariants``; the session's figures
go to ``CHAOS_REPORT`` (JSON) and are asserted at the end: the subset must kill at least 10
workers and inject at least 200 faults, or it proved nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from istio_upgrade.devenv import LocalTemporal, ScrapeTarget
from istio_upgrade.models import workflow_id_for
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.chaos.harness import (
    FAULT_SHARE,
    Figures,
    Workers,
    api_faults,
    check_invariants,
    drive,
    new_task_queue,
    read,
    sandbox_json,
    workload_revisions,
)
from tests.integration.upgrade_stack import fast_spec

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

RUNS = int(os.environ.get("CHAOS_RUNS", "9"))
SEED = int(os.environ.get("CHAOS_SEED", "20261201"))
SESSION = Figures()
FAULT_CODES = {0, 409, 429, 500, 503}
"""Codes the faults answer with (0: a dropped connection); a genuine 409 counts too, rarely."""


@pytest.mark.parametrize("run", range(RUNS))
async def test_chaos_run_keeps_every_promise(
    run: int,
    temporal_dev_server: LocalTemporal,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED + run)
    figures = Figures(runs=1)
    sandbox = await sandbox_factory("demo")
    prometheus = await prometheus_factory([ScrapeTarget(address=sandbox.address)])
    await prometheus.wait_for_series("istio_requests_total", timeout_s=30)
    namespaces = [
        ns["metadata"]["name"]
        for ns in (await read(sandbox.url, "/api/v1/namespaces")).get("items", [])
        if ns["metadata"]["name"] not in {"istio-system", "kube-system", "default"}
        and not ns["metadata"]["name"].startswith("kube-")
    ]
    before = {
        ns["metadata"]["name"]: ns["metadata"].get("labels", {})
        for ns in (await read(sandbox.url, "/api/v1/namespaces")).get("items", [])
    }
    revisions = await workload_revisions(sandbox.url, namespaces)
    client = temporal_dev_server.env.client
    queue = new_task_queue()
    workers = Workers(temporal_dev_server.address, queue, str(sandbox.kubeconfig), tmp_path)
    workers.start()
    workers.start()
    seq = [(await sandbox_json(sandbox.url, "GET", "/sandbox/requests?limit=1"))["next"]]

    async def count_requests() -> None:
        log = await _request_log(sandbox.url, seq[0])
        figures.api_requests += len(log)
        figures.api_faults += sum(1 for r in log if r.get("code") in FAULT_CODES)
        seq[0] += len(log)

    await sandbox_json(sandbox.url, "PUT", "/sandbox/faults", api_faults(FAULT_SHARE))
    spec = fast_spec(prometheus.url, cleanup={"grace_seconds": 4})
    upgrade_id = f"{workflow_id_for(spec)}.chaos-{SEED}-{run}"
    kills = rng.randint(2, 4)

    async def restart_prometheus() -> None:
        # Down for a few seconds (a gate measuring meanwhile sees no data: never a pass),
        # then back on the same port, its recent samples lost as after a crash.
        await prometheus.stop()
        await asyncio.sleep(rng.uniform(2.0, 6.0))
        await prometheus.start()

    async def restart_api_server() -> None:
        # Mid-run, state kept (objects, resourceVersions, faults): watches end, clients
        # reconnect, exactly as after a control-plane restart of a real cluster.
        await count_requests()
        await asyncio.to_thread(sandbox.restart)
        seq[0] = (await sandbox_json(sandbox.url, "GET", "/sandbox/requests?limit=1"))["next"]

    # Most runs end by a cancel or an abort at a random point; a few run to their end.
    stop = rng.choices([None, "cancel", "abort"], weights=[1, 4, 4])[0]
    try:
        handle = await client.start_workflow(
            IstioCanaryUpgrade.run, spec, id=upgrade_id, task_queue=queue
        )
        disruptions = [d for d in (restart_prometheus, restart_api_server) if rng.random() < 0.4]
        status = await drive(
            handle, workers, rng, figures, kills=kills, stop=stop, disruptions=disruptions
        )
        assert status is not None, f"{upgrade_id} did not end within the deadline"
    finally:
        await sandbox_json(sandbox.url, "POST", "/sandbox/faults/clear")
    try:
        figures.violations += await check_invariants(
            client, upgrade_id, sandbox.url, before, namespaces, revisions
        )
        progress = await handle.query(IstioCanaryUpgrade.progress)
        figures.outcomes[f"{status.name}/{progress.phase.value}"] += 1
        if progress.phase.value == "FAILED":
            figures.failed.append(f"{upgrade_id}: {progress.errors[-3:]}")
    finally:
        workers.stop()
    await count_requests()
    SESSION.add(figures)
    _report()
    assert not figures.violations, figures.violations


async def _request_log(url: str, since: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    while True:
        page = await sandbox_json(url, "GET", f"/sandbox/requests?since={since}")
        entries += page["requests"]
        if not page["requests"] or page["next"] == since:
            return entries
        since = page["next"]


def _report() -> None:
    path = os.environ.get("CHAOS_REPORT")
    if path:
        Path(path).write_text(json.dumps({"seed": SEED, **SESSION.as_json()}, indent=2))


def test_the_chaos_subset_was_chaotic_enough() -> None:
    """The runs above must have exercised enough failure to mean something."""
    if SESSION.runs < RUNS:
        pytest.skip("run with the chaos runs (-m chaos, whole module)")
    print(json.dumps(SESSION.as_json(), indent=2))
    assert SESSION.worker_kills >= 10, SESSION.as_json()
    assert SESSION.api_faults >= 200, SESSION.as_json()
    assert not SESSION.violations
