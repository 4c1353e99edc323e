"""Listing stays fast at the ``large`` scenario's scale (20,000 pods in 2,000 namespaces)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from istio_upgrade.sandbox.cluster import Cluster
from istio_upgrade.sandbox.resources import BY_KEY
from tests.sandbox.conftest import ServedSandbox

NAMESPACES = 2_000
PODS_PER_NAMESPACE = 10


@pytest.fixture(scope="module")
def large() -> Iterator[ServedSandbox]:
    cluster = Cluster()
    ns_type, pod_type = BY_KEY["/namespaces"], BY_KEY["/pods"]
    for n in range(NAMESPACES):
        ns = f"ns-{n:04d}"
        cluster.store.create(ns_type, {"metadata": {"name": ns}})
        for p in range(PODS_PER_NAMESPACE):
            pod = {
                "metadata": {"name": f"app-{p}", "namespace": ns, "labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                "status": {"phase": "Running"},
            }
            cluster.store.create(pod_type, pod)
    # No controllers: this measures the HTTP layer, not reconciliation of 20,000 pods.
    served = ServedSandbox(cluster, with_controllers=False).start()
    try:
        yield served
    finally:
        served.stop()


def _timed_get(http: httpx.Client, path: str, **params: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    resp = http.get(path, params=params)
    return time.perf_counter() - started, resp


def test_namespace_pod_list_is_fast(large: ServedSandbox) -> None:
    with httpx.Client(base_url=large.url) as http:
        http.get("/api/v1/namespaces/ns-0000/pods")  # warm the connection
        worst = 0.0
        for n in (1, 999, 1999):
            took, resp = _timed_get(
                http, f"/api/v1/namespaces/ns-{n:04d}/pods", labelSelector="app=app"
            )
            assert len(resp.json()["items"]) == PODS_PER_NAMESPACE
            worst = max(worst, took)
    assert worst < 0.25, f"namespace list took {worst:.3f}s"


def test_paged_cluster_wide_list_visits_every_pod_once(large: ServedSandbox) -> None:
    seen = 0
    token = ""
    with httpx.Client(base_url=large.url, timeout=30) as http:
        started = time.perf_counter()
        took_first, first = _timed_get(http, "/api/v1/pods", limit="500")
        assert first.json()["metadata"]["remainingItemCount"] == 20_000 - 500
        assert took_first < 0.5, f"first page took {took_first:.3f}s"
        while True:
            params = {"limit": "2000", **({"continue": token} if token else {})}
            body = http.get("/api/v1/pods", params=params).json()
            seen += len(body["items"])
            token = body["metadata"].get("continue", "")
            if not token:
                break
        total = time.perf_counter() - started
    assert seen == NAMESPACES * PODS_PER_NAMESPACE
    assert total < 10.0
