"""Argo Rollouts: pods owned by a ReplicaSet owned by a Rollout; template changes and
``spec.restartAt`` restarts; hostNetwork pods are never injected; DaemonSet maxSurge."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from istio_sandbox.controllers.objects import DAEMONSETS, PODS, REPLICASETS, ROLLOUTS
from istio_sandbox.controllers.rollouts import render_rollout_crd
from istio_sandbox.istio.names import ANNOTATION_REV
from istio_sandbox.store import Obj
from tests.sandbox.controllers_support import (
    create,
    install_revision,
    is_ready,
    namespace,
    pods_of,
    revision_ready,
    running,
    wait_for,
)


def rollout(name: str, ns: str, replicas: int = 2) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": f"example/{name}:1"}]},
            },
            "strategy": {"canary": {}},
        },
    }


def healthy(cluster: object, ns: str, name: str) -> bool:
    ro = cluster.store.get(ROLLOUTS, ns, name)  # type: ignore[attr-defined]
    st = ro.get("status") or {}
    return bool(
        st.get("phase") == "Healthy"
        and st.get("observedGeneration") == str(ro["metadata"]["generation"])
        and st.get("availableReplicas") == ro["spec"]["replicas"]
    )


async def test_rollout_pods_belong_to_a_replicaset_owned_by_the_rollout() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.31.0", "1-31-0")
        await revision_ready(cluster, "1-31-0")
        namespace(cluster, "shop", {"istio.io/rev": "1-31-0"})
        create(cluster, render_rollout_crd())
        cluster.store.create(ROLLOUTS, rollout("cart", "shop"))
        await wait_for(lambda: healthy(cluster, "shop", "cart"), what="Rollout Healthy")
        pods = pods_of(cluster, "shop", "cart-")
        assert len(pods) == 2
        ref = pods[0]["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["controller"] is True
        rs = cluster.store.get(REPLICASETS, "shop", ref["name"])
        owner = rs["metadata"]["ownerReferences"][0]
        assert (owner["apiVersion"], owner["kind"], owner["name"], owner["controller"]) == (
            "argoproj.io/v1alpha1",
            "Rollout",
            "cart",
            True,
        )
        assert "rollouts-pod-template-hash" in pods[0]["metadata"]["labels"]
        assert pods[0]["metadata"]["annotations"][ANNOTATION_REV] == "1-31-0"


async def test_rollout_template_change_and_restart_at_replace_pods() -> None:
    async with running() as cluster:
        namespace(cluster, "shop")
        create(cluster, render_rollout_crd())
        cluster.store.create(ROLLOUTS, rollout("cart", "shop"))
        await wait_for(lambda: healthy(cluster, "shop", "cart"), what="Rollout Healthy")
        first = {p["metadata"]["uid"] for p in pods_of(cluster, "shop", "cart-")}
        rs_before = {r["metadata"]["name"] for r in cluster.store.list(REPLICASETS, "shop")}
        await asyncio.sleep(1.1)  # creationTimestamp has a one-second resolution
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def restart_at(o: Obj) -> None:
            o["spec"]["restartAt"] = stamp

        cluster.store.mutate(ROLLOUTS, "shop", "cart", restart_at)

        def restarted() -> bool:
            st = cluster.store.get(ROLLOUTS, "shop", "cart").get("status") or {}
            uids = {p["metadata"]["uid"] for p in pods_of(cluster, "shop", "cart-")}
            return (
                st.get("restartedAt") == stamp
                and not uids & first
                and healthy(cluster, "shop", "cart")
            )

        await wait_for(restarted, within=10, what="pods restarted")
        # restartAt keeps the ReplicaSet; a template change makes a new one.
        assert {r["metadata"]["name"] for r in cluster.store.list(REPLICASETS, "shop")} == rs_before

        def bump(o: Obj) -> None:
            o["spec"]["template"]["metadata"]["labels"]["version"] = "v2"

        cluster.store.mutate(ROLLOUTS, "shop", "cart", bump)
        await wait_for(
            lambda: (
                healthy(cluster, "shop", "cart")
                and all(
                    p["metadata"]["labels"].get("version") == "v2"
                    for p in pods_of(cluster, "shop", "cart-")
                )
                and len(pods_of(cluster, "shop", "cart-")) == 2
            ),
            what="new template rolled",
        )
        assert len(cluster.store.list(REPLICASETS, "shop")) == 2


async def test_host_network_pods_are_never_injected() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.31.0", "1-31-0")
        await revision_ready(cluster, "1-31-0")
        namespace(cluster, "agents", {"istio.io/rev": "1-31-0"})
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent", "namespace": "agents"},
            "spec": {"hostNetwork": True, "containers": [{"name": "a", "image": "x/a:1"}]},
        }
        created = cluster.store.create(PODS, pod)
        assert ANNOTATION_REV not in (created["metadata"].get("annotations") or {})
        assert [c["name"] for c in created["spec"]["containers"]] == ["a"]
        await wait_for(
            lambda: (cluster.store.get(PODS, "agents", "agent").get("status") or {}).get("podIP")
        )
        st = cluster.store.get(PODS, "agents", "agent")["status"]
        assert st["podIP"] == st["hostIP"]


async def test_daemonset_max_surge_replaces_node_by_node() -> None:
    async with running() as cluster:
        namespace(cluster, "node")
        ds: Obj = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "node"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "x/a:1"}]},
                },
            },
        }
        create(cluster, ds)
        await wait_for(
            lambda: len([p for p in pods_of(cluster, "node") if is_ready(p)]) == 3,
            what="one Ready pod per node",
        )

        def bump(o: Obj) -> None:
            o["spec"]["template"]["spec"]["containers"][0]["image"] = "x/a:2"

        cluster.store.mutate(DAEMONSETS, "node", "agent", bump)
        most = 0
        ready_min = 3
        for _ in range(400):
            pods = pods_of(cluster, "node")
            new = [p for p in pods if p["spec"]["containers"][0]["image"] == "x/a:2"]
            most = max(most, len(pods))
            by_node: dict[str, bool] = {}
            for p in cluster.store.list(PODS, "node"):
                by_node[p["spec"]["nodeName"]] = by_node.get(p["spec"]["nodeName"], False) or (
                    is_ready(p) and not p["metadata"].get("deletionTimestamp")
                )
            ready_min = min(ready_min, sum(by_node.values()))
            if len(new) == 3 and all(is_ready(p) for p in new) and len(pods) == 3:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("DaemonSet never finished rolling")
        assert most <= 4  # at most one node surges at a time
        assert ready_min == 3  # maxUnavailable 0: every node keeps a Ready pod
