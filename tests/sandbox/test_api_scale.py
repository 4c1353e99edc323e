"""Listing stays right at the ``large`` scenario's scale (20,000 pods in 2,000 namespaces).

How fast it is, is measured by ``python -m bench.sandbox_large``
(``docs/bench/sandbox-large.json``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from istio_sandbox.cluster import Cluster
from istio_sandbox.resources import BY_KEY
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
    # No controllers: this exercises the HTTP layer, not reconciliation of 20,000 pods.
    served = ServedSandbox(cluster, with_controllers=False).start()
    try:
        yield served
    finally:
        served.stop()


def test_namespace_pod_list_returns_only_that_namespace(large: ServedSandbox) -> None:
    with httpx.Client(base_url=large.url) as http:
        for n in (1, 999, 1999):
            resp = http.get(
                f"/api/v1/namespaces/ns-{n:04d}/pods", params={"labelSelector": "app=app"}
            )
            items = resp.json()["items"]
            assert len(items) == PODS_PER_NAMESPACE
            assert {i["metadata"]["namespace"] for i in items} == {f"ns-{n:04d}"}


def test_paged_cluster_wide_list_visits_every_pod_once(large: ServedSandbox) -> None:
    seen: set[tuple[str, str]] = set()
    token = ""
    with httpx.Client(base_url=large.url, timeout=30) as http:
        first = http.get("/api/v1/pods", params={"limit": "500"}).json()
        assert len(first["items"]) == 500
        assert first["metadata"]["remainingItemCount"] == 20_000 - 500
        pages = 0
        while True:
            params = {"limit": "2000", **({"continue": token} if token else {})}
            body = http.get("/api/v1/pods", params=params).json()
            pages += 1
            for item in body["items"]:
                key = (item["metadata"]["namespace"], item["metadata"]["name"])
                assert key not in seen, f"{key} listed twice"
                seen.add(key)
            token = body["metadata"].get("continue", "")
            if not token:
                break
    assert len(seen) == NAMESPACES * PODS_PER_NAMESPACE
    assert pages == 10
