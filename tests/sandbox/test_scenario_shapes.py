"""The ``shapes`` scenario: every shape comes up as a real cluster would run it, with traffic."""

from __future__ import annotations

from typing import Any

from istio_sandbox.controllers.objects import DEPLOYMENTS, PODS, REPLICASETS, STATEFULSETS
from istio_sandbox.istio.ambient import ANNOTATION_REDIRECTION
from istio_sandbox.scenario import load_scenario, parse_scenario
from istio_sandbox.store import Obj
from tests.sandbox.controllers_support import is_ready, wait_for
from tests.sandbox.test_ambient import FAST, _metric, served


def _fast_shapes(**changes: Any) -> Any:
    scenario = load_scenario("shapes")
    doc = scenario.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    doc["timings"] = FAST
    doc.update(changes)
    return parse_scenario(doc)


def _pods(store: Any, ns: str) -> list[Obj]:
    return [p for p in store.list(PODS, ns) if not p["metadata"].get("deletionTimestamp")]


def _rev(pod: Obj) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("istio.io/rev")


async def test_shapes_come_up_with_traffic_through_each() -> None:
    async with served(_fast_shapes()) as sb:
        store = sb.cluster.store

        def all_ready() -> bool:
            pods = store.list(PODS)
            running = [p for p in pods if p["status"].get("phase") != "Succeeded"]
            return len(running) > 20 and all(is_ready(p) for p in running)

        await wait_for(all_ready, within=20, what="every pod Ready")
        # Helm gateway in an unlabelled namespace: injected with the gateway template.
        gw = _pods(store, "istio-ingress")
        assert len(gw) == 2 and all(_rev(p) == "1-30-3" for p in gw)
        # Gateway API gateway: istiod's Deployment, not injected, proxy of the default tag.
        dep = store.get(DEPLOYMENTS, "edge", "public-istio")
        assert dep["spec"]["template"]["metadata"]["annotations"]["istio.io/rev"] == "1-30-3"
        assert all(_rev(p) == "1-30-3" for p in _pods(store, "edge"))
        # Argo Rollout: Pod -> ReplicaSet -> Rollout.
        rs_name = _pods(store, "catalog")[0]["metadata"]["ownerReferences"][0]["name"]
        rs = store.get(REPLICASETS, "catalog", rs_name)
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
        # Ambient namespace: enrolled, no sidecar; the waypoint runs there.
        orders = [
            p for p in _pods(store, "orders") if p["metadata"]["labels"].get("app") == "orders"
        ]
        assert len(orders) == 2
        assert all(
            p["metadata"]["annotations"].get(ANNOTATION_REDIRECTION) == "enabled" and not _rev(p)
            for p in orders
        )
        assert store.get(DEPLOYMENTS, "orders", "waypoint")
        # OnDelete StatefulSet, hostNetwork DaemonSet never injected.
        assert store.get(STATEFULSETS, "ledger", "ledger")["spec"]["updateStrategy"] == {
            "type": "OnDelete"
        }
        agents = _pods(store, "monitoring")
        assert len(agents) == 3 and all(not _rev(p) for p in agents)
        ztunnels = [
            p
            for p in _pods(store, "istio-system")
            if p["metadata"]["labels"].get("app") == "ztunnel"
        ]
        assert len(ztunnels) == 3

        def traffic() -> bool:
            page = sb.mesh.page.decode()
            return all(
                [
                    _metric(page, "istio_requests_total", destination_workload="web") > 0,
                    _metric(page, "istio_requests_total", destination_workload="catalog") > 0,
                    _metric(page, "istio_requests_total", destination_workload="ledger") > 0,
                    _metric(page, "istio_requests_total", destination_workload="public-istio") > 0,
                    _metric(
                        page,
                        "istio_requests_total",
                        reporter="waypoint",
                        destination_workload="orders",
                    )
                    > 0,
                    _metric(
                        page, "istio_tcp_connections_opened_total", destination_workload="orders"
                    )
                    > 0,
                ]
            )

        await wait_for(traffic, within=10, what="traffic through every shape")


async def test_a_paused_deployment_can_be_added() -> None:
    scenario = _fast_shapes()
    doc = scenario.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    doc["namespaces"].append(
        {"name": "frozen", "labels": {"istio-injection": "enabled"},
         "workloads": [{"name": "frozen", "paused": True}]}
    )  # fmt: skip
    async with served(parse_scenario(doc)) as sb:
        store = sb.cluster.store
        # Paused after its first rollout: it has its pods, and a restart does not roll them.
        await wait_for(
            lambda: [p for p in _pods(store, "frozen") if is_ready(p) and _rev(p) == "1-30-3"],
            what="the paused Deployment's pod",
        )
        dep = store.get(DEPLOYMENTS, "frozen", "frozen")
        assert dep["spec"]["paused"] is True
        before = {p["metadata"]["uid"] for p in _pods(store, "frozen")}

        def restart(o: Obj) -> None:
            o["spec"]["template"]["metadata"]["annotations"] = {
                "kubectl.kubernetes.io/restartedAt": "x"
            }

        store.mutate(DEPLOYMENTS, "frozen", "frozen", restart)

        def paused_status() -> bool:
            d = store.get(DEPLOYMENTS, "frozen", "frozen")
            st = d.get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            return (
                st.get("observedGeneration") == d["metadata"]["generation"]
                and conds.get("Progressing", {}).get("reason") == "DeploymentPaused"
            )

        await wait_for(paused_status, what="DeploymentPaused")
        assert {p["metadata"]["uid"] for p in _pods(store, "frozen")} == before
        assert len(store.list(REPLICASETS, "frozen")) == 1
