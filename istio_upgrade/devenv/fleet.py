"""Sandbox clusters for the fleet demo: small clusters, one whose new revision burns.

Each cluster is a three-namespace mesh on Istio 1.30.3 (a gateway, ``frontend`` as canary,
``checkout`` behind it), quick to upgrade. The bad one's pods injected by the target
revision in ``checkout`` answer 30% HTTP 503, so its gate fails and it rolls back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from istio_upgrade.devenv.stack import DevStack, LocalCluster

NAMESPACES = ("istio-ingress", "frontend", "checkout")
WRITES = {"create", "update", "patch", "delete", "deletecollection", "apply"}

SMALL_SCENARIO = """\
name: fleet-demo
description: 3 meshed namespaces on revision 1-30-3 behind an ingress gateway
cluster_name: fleet
timings:
  pod_start_s: 0.2
  pod_ready_s: 0.2
  pod_terminate_s: 0.1
  istiod_ready_s: 1.0
  job_duration_s: 1.0
revisions:
  - version: 1.30.3
tags:
  default: 1-30-3
namespaces:
  - name: istio-ingress
    labels: {istio-injection: enabled}
    workloads:
      - name: istio-ingressgateway
        gateway: true
        replicas: 1
        rps: 60
        latency_ms: 4
        calls: [frontend/web]
  - name: frontend
    labels: {istio-injection: enabled}
    workloads:
      - name: web
        replicas: 1
        rps: 60
        latency_ms: 20
        calls: [checkout/checkout]
  - name: checkout
    labels: {istio.io/rev: 1-30-3}
    workloads:
      - name: checkout
        replicas: 1
        rps: 60
        latency_ms: 30
"""

BAD_SCENARIO = """\
extends: {base}
name: fleet-demo-bad
description: fleet-demo where pods injected by {revision} in checkout answer 30% HTTP 503
faults:
  traffic:
    - namespaces: [checkout]
      revision: {revision}
      error_ratio: 0.3
      error_code: 503
"""


def write_scenarios(run_dir: Path, bad_revision: str) -> tuple[Path, Path]:
    """Write the good and the bad cluster's scenario files; return their paths."""
    good = run_dir / "fleet-demo.yaml"
    bad = run_dir / "fleet-demo-bad.yaml"
    good.write_text(SMALL_SCENARIO)
    bad.write_text(BAD_SCENARIO.format(base=good, revision=bad_revision))
    return good, bad


async def add_fleet_clusters(
    stack: DevStack, names: list[str], bad: set[str], bad_revision: str
) -> list[LocalCluster]:
    """Start a sandbox and a Prometheus for each of ``names`` (in parallel); the ``bad``
    ones burn on ``bad_revision``. Returns once every Prometheus holds request series, so
    each gate has pre-upgrade traffic to compare with."""
    good_file, bad_file = write_scenarios(stack.run_dir, bad_revision)
    clusters = await asyncio.gather(
        *(stack.add_cluster(n, bad_file if n in bad else good_file) for n in names)
    )
    await asyncio.gather(
        *(c.prometheus.wait_for_series("istio_requests_total", timeout_s=60) for c in clusters)
    )
    return list(clusters)


def request_mark(cluster: LocalCluster) -> int:
    """Where the cluster's request log ends now: pass it to :func:`cluster_writes`."""
    return cluster.sandbox.requests()[1]


def cluster_writes(cluster: LocalCluster, since: int) -> list[dict[str, Any]]:
    """The writes (creates, patches, deletes …) the cluster's API served from ``since`` on;
    access reviews (a permission precheck asks them with ``create``) change nothing."""
    entries, _ = cluster.sandbox.requests(since)
    return [
        e
        for e in entries
        if str(e.get("verb", "")).lower() in WRITES and e.get("apiGroup") != "authorization.k8s.io"
    ]


async def pod_revisions(cluster: LocalCluster) -> set[str | None]:
    """The revisions the cluster's live pods in :data:`NAMESPACES` are injected by."""
    revisions: set[str | None] = set()
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as http:
        for namespace in NAMESPACES:
            response = await http.get(f"/api/v1/namespaces/{namespace}/pods")
            response.raise_for_status()
            for pod in response.json().get("items", []):
                meta = pod["metadata"]
                phase = pod.get("status", {}).get("phase")
                if meta.get("deletionTimestamp") or phase in {"Succeeded", "Failed"}:
                    continue
                revisions.add((meta.get("annotations") or {}).get("istio.io/rev"))
    return revisions
