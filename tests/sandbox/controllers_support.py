"""Helpers for the controller tests: a running in-process cluster and small object builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from istio_sandbox.cluster import Cluster, Timings
from istio_sandbox.controllers import Controllers
from istio_sandbox.controllers.objects import DEPLOYMENTS, EVENTS, NAMESPACES, PODS
from istio_sandbox.istio.charts import render_istiod, render_tag
from istio_sandbox.resources import BY_KEY, by_kind
from istio_sandbox.store import Obj

FAST = Timings(
    pod_start_s=0.02,
    pod_ready_s=0.02,
    pod_terminate_s=0.02,
    istiod_ready_s=0.1,
    job_duration_s=0.1,
    controller_period_s=0.02,
)


@asynccontextmanager
async def running(timings: Timings = FAST) -> AsyncIterator[Cluster]:
    """A cluster with its controllers running on the test's loop."""
    cluster = Cluster(timings=timings.model_copy())
    controllers = Controllers(cluster)
    await controllers.start()
    try:
        yield cluster
    finally:
        await controllers.stop()


async def wait_for(
    predicate: Callable[[], Any], within: float = 5.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


def create(cluster: Cluster, obj: Obj) -> Obj:
    rt = by_kind(obj["kind"], obj["apiVersion"])
    assert rt is not None, obj["kind"]
    return cluster.store.create(rt, obj)


def namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> None:
    cluster.store.create(NAMESPACES, {"metadata": {"name": name, "labels": dict(labels or {})}})


def install_revision(cluster: Cluster, version: str, revision: str) -> None:
    """Apply a rendered istiod revision bundle (istio-system must exist or be created)."""
    if cluster.store.try_get(NAMESPACES, "", "istio-system") is None:
        namespace(cluster, "istio-system")
    for obj in render_istiod(version, revision):
        create(cluster, obj)


def set_tag(cluster: Cluster, tag: str, revision: str) -> None:
    """Create or move a revision tag (what ``istioctl tag set --overwrite`` does)."""
    for obj in render_tag(tag, revision):
        rt = by_kind(obj["kind"], obj["apiVersion"])
        assert rt is not None
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace", "istio-system")
        if rt.namespaced:
            obj["metadata"]["namespace"] = ns
        if cluster.store.try_get(rt, ns, name) is None:
            cluster.store.create(rt, obj)
        else:
            cluster.store.update(rt, obj)


async def revision_ready(cluster: Cluster, revision: str) -> None:
    from istio_sandbox.controllers import revision_ready as ready

    await wait_for(lambda: ready(cluster, revision), what=f"istiod-{revision} Ready")


def deployment(
    name: str,
    ns: str,
    replicas: int = 2,
    *,
    labels: dict[str, str] | None = None,
    strategy: Obj | None = None,
    **spec: Any,
) -> Obj:
    pod_labels = {"app": name, **(labels or {})}
    body: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "app", "image": f"example/{name}:1"}]},
            },
            **spec,
        },
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def pods_of(cluster: Cluster, ns: str, prefix: str = "") -> list[Obj]:
    return [
        p
        for p in cluster.store.list(PODS, ns)
        if p["metadata"]["name"].startswith(prefix) and not p["metadata"].get("deletionTimestamp")
    ]


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def rollout_complete(cluster: Cluster, ns: str, name: str) -> bool:
    """The exact test ``kubectl rollout status deployment/<name>`` applies."""
    d = cluster.store.get(DEPLOYMENTS, ns, name)
    st = d.get("status") or {}
    want = d["spec"].get("replicas", 1)
    if d["metadata"]["generation"] > st.get("observedGeneration", 0):
        return False
    return bool(
        st.get("updatedReplicas", 0) == want
        and st.get("replicas", 0) == st.get("updatedReplicas", 0)
        and st.get("availableReplicas", 0) == st.get("updatedReplicas", 0)
    )


def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def events_for(cluster: Cluster, ns: str, name: str) -> list[Obj]:
    return [e for e in cluster.store.list(EVENTS, ns) if e["involvedObject"]["name"] == name]


def restart(cluster: Cluster, rt_key: str, ns: str, name: str, stamp: str = "1") -> None:
    """What ``kubectl rollout restart`` does: stamp the pod template."""

    def fn(o: Obj) -> None:
        meta = o["spec"]["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = stamp

    cluster.store.mutate(BY_KEY[rt_key], ns, name, fn)
