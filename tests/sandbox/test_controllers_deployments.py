"""Deployment → ReplicaSet → Pod behaviour, checked the way kubectl and clients read it."""

from __future__ import annotations

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.objects import DEPLOYMENTS, PODS, REPLICASETS
from istio_sandbox.faults import RolloutFault
from istio_sandbox.store import Obj, WatchEvent
from tests.sandbox.controllers_support import (
    FAST,
    condition,
    create,
    deployment,
    events_for,
    is_ready,
    namespace,
    pods_of,
    restart,
    rollout_complete,
    running,
    wait_for,
)


async def test_deployment_creates_replicaset_and_ready_pods() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        d = create(cluster, deployment("web", "shop", replicas=3))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"), what="rollout")

        rses = cluster.store.list(REPLICASETS, "shop")
        assert len(rses) == 1
        rs = rses[0]
        hash_ = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{hash_}"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        owner = rs["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Deployment",
            d["metadata"]["uid"],
            True,
        )
        pods = pods_of(cluster, "shop")
        assert len(pods) == 3
        for pod in pods:
            assert pod["metadata"]["name"].startswith(f"web-{hash_}-")
            assert len(pod["metadata"]["name"]) == len(f"web-{hash_}-") + 5
            assert pod["metadata"]["labels"]["pod-template-hash"] == hash_
            assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
            assert pod["status"]["phase"] == "Running"
            assert is_ready(pod)
            assert pod["spec"]["nodeName"].startswith("sandbox-node-")
            assert pod["status"]["podIP"] and pod["status"]["hostIP"] and pod["status"]["startTime"]
            statuses = pod["status"]["containerStatuses"]
            assert statuses[0]["image"] == "example/web:1"
            assert statuses[0]["ready"] and "running" in statuses[0]["state"]

        status = cluster.store.get(DEPLOYMENTS, "shop", "web")["status"]
        assert status["observedGeneration"] == 1
        assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"]) == (3, 3, 3)
        assert status["availableReplicas"] == 3
        assert "unavailableReplicas" not in status  # omitempty, as the API server writes it
        progressing = condition(cluster.store.get(DEPLOYMENTS, "shop", "web"), "Progressing")
        assert progressing is not None
        assert progressing["reason"] == "NewReplicaSetAvailable"
        assert progressing["message"] == f'ReplicaSet "web-{hash_}" has successfully progressed.'
        available = condition(cluster.store.get(DEPLOYMENTS, "shop", "web"), "Available")
        assert available is not None and available["status"] == "True"
        reasons = {e["reason"] for e in events_for(cluster, "shop", "web")}
        assert "ScalingReplicaSet" in reasons


class RolloutRecorder:
    """Watches pods of one namespace and keeps the worst moments of a rollout."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster = cluster
        self.ns = ns
        self.max_pods = 0
        self.min_ready = 10**6
        self.recording = False
        cluster.store.add_listener(self._on)

    def _on(self, ev: WatchEvent) -> None:
        if not self.recording or ev.rt.key != PODS.key:
            return
        pods = [
            p
            for p in self.cluster.store.list(PODS, self.ns, copy_objects=False)
            if not p["metadata"].get("deletionTimestamp")
        ]
        self.max_pods = max(self.max_pods, len(pods))
        self.min_ready = min(self.min_ready, sum(1 for p in pods if is_ready(p)))


async def _rolling(strategy: Obj, replicas: int) -> RolloutRecorder:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(
            cluster,
            deployment("web", "shop", replicas, strategy={"type": "RollingUpdate", **strategy}),
        )
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"), what="first rollout")
        rec = RolloutRecorder(cluster, "shop")
        rec.recording = True
        before = {p["metadata"]["name"] for p in pods_of(cluster, "shop")}
        restart(cluster, DEPLOYMENTS.key, "shop", "web")
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"), what="restart rollout")
        await wait_for(lambda: len(pods_of(cluster, "shop")) == replicas, what="old pods gone")
        after = {p["metadata"]["name"] for p in pods_of(cluster, "shop")}
        assert not before & after, "every pod is replaced by a restart"
        rses = cluster.store.list(REPLICASETS, "shop")
        assert sorted(r["spec"]["replicas"] for r in rses) == [0, replicas]
        revisions = {
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for r in rses
        }
        assert revisions == {"1", "2"}
        assert cluster.store.get(DEPLOYMENTS, "shop", "web")["status"]["observedGeneration"] == 2
        return rec


async def test_rolling_update_with_zero_unavailable_never_drops_capacity() -> None:
    rec = await _rolling({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, replicas=4)
    assert rec.max_pods <= 5
    assert rec.min_ready >= 4


async def test_rolling_update_with_default_percentages() -> None:
    # 25% of 4: one extra pod (rounded up), one unavailable pod (rounded down).
    rec = await _rolling({}, replicas=4)
    assert rec.max_pods <= 5
    assert rec.min_ready >= 3


async def test_recreate_removes_old_pods_before_creating_new_ones() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, deployment("web", "shop", 3, strategy={"type": "Recreate"}))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        old_hash = pods_of(cluster, "shop")[0]["metadata"]["labels"]["pod-template-hash"]
        mixed: list[bool] = []

        def on(ev: WatchEvent) -> None:
            if ev.rt.key == PODS.key:
                hashes = {
                    p["metadata"]["labels"]["pod-template-hash"]
                    for p in cluster.store.list(PODS, "shop", copy_objects=False)
                }
                mixed.append(len(hashes) > 1)

        cluster.store.add_listener(on)
        restart(cluster, DEPLOYMENTS.key, "shop", "web")
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        await wait_for(lambda: len(pods_of(cluster, "shop")) == 3)
        assert not any(mixed), "old and new pods never coexist under Recreate"
        assert all(
            p["metadata"]["labels"]["pod-template-hash"] != old_hash
            for p in pods_of(cluster, "shop")
        )


async def test_scale_up_and_down() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, deployment("web", "shop", 2))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        cluster.store.mutate(DEPLOYMENTS, "shop", "web", lambda o: o["spec"].update(replicas=5))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        assert len(pods_of(cluster, "shop")) == 5
        assert len(cluster.store.list(REPLICASETS, "shop")) == 1, "scaling keeps the ReplicaSet"
        cluster.store.mutate(DEPLOYMENTS, "shop", "web", lambda o: o["spec"].update(replicas=1))
        await wait_for(lambda: len(pods_of(cluster, "shop")) == 1, what="scale down")
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        await wait_for(lambda: len(cluster.store.list(PODS, "shop")) == 1, what="terminated")


async def test_deleted_pod_is_replaced_and_deleting_the_deployment_cascades() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, deployment("web", "shop", 2))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        victim = pods_of(cluster, "shop")[0]["metadata"]["name"]
        cluster.store.delete(PODS, "shop", victim)
        await wait_for(
            lambda: len([p for p in pods_of(cluster, "shop") if is_ready(p)]) == 2,
            what="replacement pod",
        )
        assert victim not in {p["metadata"]["name"] for p in pods_of(cluster, "shop")}

        cluster.store.delete(DEPLOYMENTS, "shop", "web")
        await wait_for(lambda: not cluster.store.list(REPLICASETS, "shop"), what="RS collected")
        await wait_for(lambda: not cluster.store.list(PODS, "shop"), what="pods collected")


async def test_bare_pod_lifecycle_and_it_stays() -> None:
    async with running() as cluster:
        namespace(cluster, "tools")
        cluster.store.create(
            PODS,
            {
                "metadata": {"name": "debug", "namespace": "tools"},
                "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]},
                "status": {"phase": "Pending"},
            },
        )
        await wait_for(lambda: is_ready(cluster.store.get(PODS, "tools", "debug")), what="Ready")
        pod = cluster.store.get(PODS, "tools", "debug")
        types = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert types["PodScheduled"] == types["Initialized"] == types["ContainersReady"] == "True"
        assert pod["spec"]["nodeName"].startswith("sandbox-node-")
        reasons = [e["reason"] for e in events_for(cluster, "tools", "debug")]
        assert reasons[:1] == ["Scheduled"] and "Started" in reasons
        cluster.store.delete(PODS, "tools", "debug")
        await wait_for(lambda: True)
        assert cluster.store.try_get(PODS, "tools", "debug") is None


async def test_stuck_fault_blocks_the_new_template_until_cleared() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, deployment("web", "shop", 2))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        cluster.faults.rollouts.append(RolloutFault(kind="stuck", namespace="shop", workload="web"))
        restart(cluster, DEPLOYMENTS.key, "shop", "web")
        await wait_for(lambda: len(cluster.store.list(REPLICASETS, "shop")) == 2, what="new RS")
        import asyncio

        await asyncio.sleep(0.3)
        new_rs = next(
            r
            for r in cluster.store.list(REPLICASETS, "shop")
            if r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        )
        assert new_rs["spec"]["replicas"] >= 1
        assert new_rs.get("status", {}).get("replicas", 0) == 0, "no pod of the new template"
        assert not rollout_complete(cluster, "shop", "web")
        cluster.faults.rollouts.clear()
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"), what="unstuck rollout")


async def test_never_ready_pods_exceed_the_progress_deadline() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, deployment("web", "shop", 2, progressDeadlineSeconds=1))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))
        cluster.faults.rollouts.append(RolloutFault(kind="never_ready", namespace="shop"))
        restart(cluster, DEPLOYMENTS.key, "shop", "web")

        def timed_out() -> bool:
            cond = condition(cluster.store.get(DEPLOYMENTS, "shop", "web"), "Progressing")
            return bool(cond and cond["reason"] == "ProgressDeadlineExceeded")

        await wait_for(timed_out, within=5, what="ProgressDeadlineExceeded")
        cond = condition(cluster.store.get(DEPLOYMENTS, "shop", "web"), "Progressing")
        assert cond is not None and cond["status"] == "False"
        assert cond["message"].endswith("has timed out progressing.")
        new_pods = [p for p in pods_of(cluster, "shop") if not is_ready(p)]
        assert new_pods and all(p["status"]["phase"] == "Running" for p in new_pods)
        unhealthy = [
            e
            for p in new_pods
            for e in events_for(cluster, "shop", p["metadata"]["name"])
            if e["reason"] == "Unhealthy"
        ]
        assert unhealthy and unhealthy[0]["type"] == "Warning"
        assert "Readiness probe failed" in unhealthy[0]["message"]


async def test_crash_fault_gives_crashloopbackoff_with_growing_restarts() -> None:
    async with running(FAST.model_copy(update={"pod_ready_s": 0.02})) as cluster:
        namespace(cluster, "shop")
        cluster.faults.rollouts.append(RolloutFault(kind="crash", namespace="shop"))
        create(cluster, deployment("web", "shop", 1))

        def restarts() -> int:
            pods = pods_of(cluster, "shop")
            if not pods or not pods[0].get("status", {}).get("containerStatuses"):
                return 0
            return int(pods[0]["status"]["containerStatuses"][0]["restartCount"])

        await wait_for(lambda: restarts() >= 2, what="restartCount growing")
        pod = pods_of(cluster, "shop")[0]
        state = pod["status"]["containerStatuses"][0]["state"]
        assert state["waiting"]["reason"] == "CrashLoopBackOff"
        assert not is_ready(pod)
        backoff = [
            e
            for e in events_for(cluster, "shop", pod["metadata"]["name"])
            if e["reason"] == "BackOff"
        ]
        assert backoff and backoff[0]["count"] >= 2, "repeated events are deduplicated by count"
