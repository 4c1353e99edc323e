"""StatefulSets, DaemonSets, Jobs, Events and pod logs of the sandbox controllers."""

from __future__ import annotations

import pytest

from istio_sandbox.controllers import NODES, BadRequest, pod_log
from istio_sandbox.controllers.events import EventRecorder
from istio_sandbox.controllers.objects import DAEMONSETS, EVENTS, JOBS, PODS, STATEFULSETS
from istio_sandbox.faults import RolloutFault
from istio_sandbox.store import Obj, Store, WatchEvent
from tests.sandbox.controllers_support import (
    condition,
    create,
    install_revision,
    is_ready,
    namespace,
    pods_of,
    restart,
    revision_ready,
    running,
    wait_for,
)


def workload(kind: str, name: str, ns: str, **spec: object) -> Obj:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    body: Obj = {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": f"example/{name}:1"}]},
            },
            **spec,
        },
    }
    if kind != "Job":
        body["spec"]["selector"] = {"matchLabels": {"app": name}}
    return body


def sts_done(sts: Obj) -> bool:
    """``kubectl rollout status statefulset`` success condition."""
    st = sts.get("status") or {}
    return bool(
        st.get("observedGeneration", 0) >= sts["metadata"]["generation"]
        and st.get("readyReplicas", 0) == sts["spec"]["replicas"]
        and st.get("updatedReplicas", 0) == sts["spec"]["replicas"]
        and st.get("currentRevision") == st.get("updateRevision")
    )


def ds_done(ds: Obj) -> bool:
    """``kubectl rollout status daemonset`` success condition."""
    st = ds.get("status") or {}
    return bool(
        st.get("observedGeneration", 0) >= ds["metadata"]["generation"]
        and st.get("updatedNumberScheduled", 0) == st.get("desiredNumberScheduled")
        and st.get("numberAvailable", 0) == st.get("desiredNumberScheduled")
    )


async def test_statefulset_creates_ordinals_and_updates_in_reverse_order() -> None:
    async with running() as cluster:
        namespace(cluster, "db")
        create(cluster, workload("StatefulSet", "pg", "db", replicas=3, serviceName="pg"))
        await wait_for(lambda: sts_done(cluster.store.get(STATEFULSETS, "db", "pg")))
        pods = pods_of(cluster, "db")
        assert sorted(p["metadata"]["name"] for p in pods) == ["pg-0", "pg-1", "pg-2"]
        first = cluster.store.get(STATEFULSETS, "db", "pg")["status"]
        assert all(
            p["metadata"]["labels"]["controller-revision-hash"] == first["updateRevision"]
            for p in pods
        )
        order: list[str] = []

        def on(ev: WatchEvent) -> None:
            if ev.rt.key == PODS.key and ev.type == "DELETED":
                order.append(ev.obj["metadata"]["name"])

        cluster.store.add_listener(on)
        restart(cluster, STATEFULSETS.key, "db", "pg")
        await wait_for(lambda: sts_done(cluster.store.get(STATEFULSETS, "db", "pg")))
        assert order == ["pg-2", "pg-1", "pg-0"]
        status = cluster.store.get(STATEFULSETS, "db", "pg")["status"]
        assert status["updateRevision"] != first["updateRevision"]
        assert status["currentRevision"] == status["updateRevision"]
        assert status["currentReplicas"] == status["updatedReplicas"] == 3
        spec = cluster.store.get(STATEFULSETS, "db", "pg")["spec"]
        assert spec["updateStrategy"]["type"] == "RollingUpdate", "defaulted on create"


async def test_daemonset_runs_one_pod_per_node_and_rolls() -> None:
    async with running() as cluster:
        # kube-system exists from the start, as in every cluster.
        create(cluster, workload("DaemonSet", "agent", "kube-system"))
        await wait_for(lambda: ds_done(cluster.store.get(DAEMONSETS, "kube-system", "agent")))
        nodes = sorted(p["spec"]["nodeName"] for p in pods_of(cluster, "kube-system"))
        assert nodes == sorted(NODES) == ["sandbox-node-1", "sandbox-node-2", "sandbox-node-3"]
        before = {p["metadata"]["name"] for p in pods_of(cluster, "kube-system")}
        restart(cluster, DAEMONSETS.key, "kube-system", "agent")
        await wait_for(
            lambda: (
                ds_done(cluster.store.get(DAEMONSETS, "kube-system", "agent"))
                and not before & {p["metadata"]["name"] for p in pods_of(cluster, "kube-system")}
            ),
            what="daemonset rollout",
        )
        status = cluster.store.get(DAEMONSETS, "kube-system", "agent")["status"]
        assert status["desiredNumberScheduled"] == status["numberReady"] == 3
        assert status["observedGeneration"] == 2


async def test_job_pods_succeed_and_the_job_completes() -> None:
    async with running() as cluster:
        namespace(cluster, "batch")
        create(cluster, workload("Job", "migrate", "batch", completions=2, parallelism=1))
        job = await wait_for(
            lambda: (lambda j: j if condition(j, "Complete") else None)(
                cluster.store.get(JOBS, "batch", "migrate")
            ),
            what="Job Complete",
        )
        assert job["status"]["succeeded"] == 2
        assert job["status"]["completionTime"]
        pods = cluster.store.list(PODS, "batch")
        assert len(pods) == 2
        assert {p["status"]["phase"] for p in pods} == {"Succeeded"}
        state = pods[0]["status"]["containerStatuses"][0]["state"]
        assert state["terminated"]["reason"] == "Completed"
        assert pods[0]["metadata"]["labels"]["job-name"] == "migrate"


async def test_pod_logs_explain_the_sidecar_and_failures() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.31.0", "1-31-0")
        await revision_ready(cluster, "1-31-0")
        namespace(cluster, "shop", {"istio.io/rev": "1-31-0"})
        cluster.faults.rollouts.append(
            RolloutFault(kind="never_ready", namespace="shop", revision="1-31-0")
        )
        cluster.store.create(
            PODS,
            {
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": "example/web:1"}]},
            },
        )
        with pytest.raises(BadRequest, match="a container name must be specified"):
            pod_log(cluster, "shop", "web", None, None)
        with pytest.raises(BadRequest, match="is not valid for pod web"):
            pod_log(cluster, "shop", "web", "nope", None)
        await wait_for(
            lambda: (
                cluster.store.get(PODS, "shop", "web").get("status", {}).get("phase") == "Running"
            )
        )
        proxy = pod_log(cluster, "shop", "web", "istio-proxy", None)
        assert "istiod-1-31-0.istio-system.svc:15012" in proxy
        assert "gRPC config stream to xds-grpc closed" in proxy
        assert pod_log(cluster, "shop", "web", "istio-proxy", None) == proxy, "deterministic"
        assert len(pod_log(cluster, "shop", "web", "istio-proxy", 2).splitlines()) == 2
        assert "Istio version 1.31.0" in proxy
        assert pod_log(cluster, "shop", "web", "app", None).strip()
        assert not is_ready(cluster.store.get(PODS, "shop", "web"))


def test_events_are_deduplicated_and_bounded() -> None:
    store = Store()
    recorder = EventRecorder(store, max_events=5)
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    for _ in range(3):
        recorder.record(pod, "BackOff", "Back-off restarting", type_="Warning")
    events = store.list(EVENTS, "n")
    assert len(events) == 1
    assert events[0]["count"] == 3
    assert events[0]["involvedObject"]["name"] == "p"
    assert events[0]["source"]["component"] == "kubelet"
    for i in range(10):
        recorder.record(pod, "Started", f"Started container c{i}")
    messages = [e["message"] for e in store.list(EVENTS, "n")]
    assert len(messages) == 5
    assert "Started container c9" in messages and "Back-off restarting" not in messages
