"""bad-canary end to end in one loop: install 1-31-0, migrate checkout, watch it fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from istio_sandbox.controllers import revision_ready
from istio_sandbox.istio.charts import render_istiod
from istio_sandbox.mesh import REQUEST_LABELS, Mesh
from istio_sandbox.resources import BY_KEY, by_kind
from istio_sandbox.scenario import load_scenario
from istio_sandbox.server import Sandbox
from istio_sandbox.store import Obj

pytestmark = pytest.mark.slow

NAMESPACES = BY_KEY["/namespaces"]
DEPLOYMENTS = BY_KEY["apps/deployments"]


async def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached after {timeout_s}s"
        await asyncio.sleep(0.05)


def _served(mesh: Mesh, namespace: str) -> tuple[float, float]:
    """Requests and 5xx answers the destination reporter counted in ``namespace``."""
    total = errors = 0.0
    for key, series in mesh.traffic.requests.items():
        labels = dict(zip(REQUEST_LABELS, key, strict=True))
        if labels["reporter"] == "destination" and (
            labels["destination_workload_namespace"] == namespace
        ):
            total += series.count
            if labels["response_code"].startswith("5"):
                errors += series.count
    return total, errors


async def test_pods_of_the_bad_revision_fail_and_pilot_xds_moves() -> None:
    sandbox = Sandbox(load_scenario("bad-canary"), tick_s=0.1)
    await sandbox.start()
    try:
        cluster, mesh = sandbox.cluster, sandbox.mesh
        store = cluster.store
        await _until(lambda: mesh.pods.proxies[("1-30-3", "1.30.3")] >= 20, 60, "demo Ready")
        for obj in render_istiod("1.31.0", "1-31-0"):
            rt = by_kind(obj["kind"], obj["apiVersion"])
            assert rt is not None
            store.create(rt, obj)
        await _until(lambda: revision_ready(cluster, "1-31-0"), 60, "istiod-1-31-0 Ready")
        total, errors = _served(mesh, "checkout")
        assert total > 0 and errors == 0, "1-30-3 pods serve checkout without errors"

        def relabel(ns: Obj) -> None:
            ns["metadata"]["labels"]["istio.io/rev"] = "1-31-0"

        def restart(dep: Obj) -> None:
            annotations = dep["spec"]["template"]["metadata"].setdefault("annotations", {})
            annotations["kubectl.kubernetes.io/restartedAt"] = "2026-01-01T00:00:00Z"

        store.mutate(NAMESPACES, "", "checkout", relabel)
        store.mutate(DEPLOYMENTS, "checkout", "checkout", restart)
        await _until(
            lambda: (
                mesh.pods.proxies[("1-31-0", "1.31.0")] == 2
                and all(
                    p.revision == "1-31-0" for p in mesh.pods.ready_pods("checkout", "checkout")
                )
            ),
            60,
            "checkout migrated",
        )
        before_total, before_errors = _served(mesh, "checkout")
        # A hundred requests, so that one error more or less moves the ratio by 1% at most.
        await _until(lambda: _served(mesh, "checkout")[0] - before_total >= 100, 60, "100 requests")
        total, errors = _served(mesh, "checkout")
        ratio = (errors - before_errors) / (total - before_total)
        assert ratio == pytest.approx(0.05, abs=0.015)
        assert _served(mesh, "cart")[1] == 0, "the fault stays on the migrated namespace"
        xds = mesh.page.decode()
        assert 'pilot_xds{revision="1-31-0",version="1.31.0"} 2' in xds
        assert cluster.injection_successes["1-31-0"] >= 2
    finally:
        await sandbox.stop()
