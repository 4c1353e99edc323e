"""Ambient: ztunnel and istio-cni DaemonSets, pod enrollment instead of sidecars, ztunnel's
xDS connection and TCP metrics, waypoint request metrics, node-by-node ztunnel upgrades."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from istio_sandbox.controllers.objects import DAEMONSETS, NAMESPACES, PODS
from istio_sandbox.istio.ambient import ANNOTATION_REDIRECTION, render_istio_cni, render_ztunnel
from istio_sandbox.scenario import parse_scenario
from istio_sandbox.server import Sandbox
from istio_sandbox.store import Obj
from tests.sandbox.controllers_support import is_ready, wait_for

FAST = {
    "pod_start_s": 0.05,
    "pod_ready_s": 0.05,
    "pod_terminate_s": 0.05,
    "istiod_ready_s": 0.1,
    "job_duration_s": 0.1,
    "controller_period_s": 0.02,
}


def _scenario(**extra: Any) -> Any:
    doc: dict[str, Any] = {
        "name": "ambient-test",
        "timings": FAST,
        "revisions": [{"version": "1.30.3"}],
        "tags": {"default": "1-30-3"},
        "ambient": {"version": "1.30.3"},
        "namespaces": [
            {
                "name": "shop",
                "labels": {
                    "istio.io/dataplane-mode": "ambient",
                    "istio.io/use-waypoint": "waypoint",
                },
                "workloads": [{"name": "cart", "replicas": 2, "rps": 20}],
                "gateways": [{"name": "waypoint", "class": "istio-waypoint"}],
            },
            {
                "name": "plain",
                "labels": {"istio.io/dataplane-mode": "ambient"},
                "workloads": [{"name": "api", "replicas": 1, "rps": 10}],
            },
        ],
        **extra,
    }
    return parse_scenario(doc)


@asynccontextmanager
async def served(scenario: Any) -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(scenario, tick_s=0.1)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def _metric(page: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in page.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_charts_render_upstream_names() -> None:
    _sa, ds = render_ztunnel("1.31.0", "1-31-0")
    assert (ds["kind"], ds["metadata"]["name"], ds["metadata"]["namespace"]) == (
        "DaemonSet",
        "ztunnel",
        "istio-system",
    )
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/istio/ztunnel:1.31.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["XDS_ADDRESS"] == env["CA_ADDRESS"] == "istiod-1-31-0.istio-system.svc:15012"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    _, ds0 = render_ztunnel("1.31.0")
    env0 = {
        e["name"]: e.get("value") for e in ds0["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env0["XDS_ADDRESS"] == "istiod.istio-system.svc:15012"
    cni = next(o for o in render_istio_cni("1.31.0") if o["kind"] == "DaemonSet")
    assert cni["metadata"]["name"] == "istio-cni-node"
    assert cni["spec"]["template"]["spec"]["hostNetwork"] is True
    assert cni["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "docker.io/istio/install-cni:1.31.0"
    )


async def test_ambient_pods_are_enrolled_not_injected_and_measured() -> None:
    async with served(_scenario()) as sb:
        store = sb.cluster.store

        def enrolled(ns: str, app: str, n: int) -> bool:
            pods = [p for p in store.list(PODS, ns) if p["metadata"]["labels"].get("app") == app]
            return len(pods) == n and all(
                is_ready(p)
                and (p["metadata"].get("annotations") or {}).get(ANNOTATION_REDIRECTION)
                == "enabled"
                for p in pods
            )

        await wait_for(lambda: enrolled("shop", "cart", 2), within=10, what="cart enrolled")
        for pod in store.list(PODS, "shop"):
            if pod["metadata"]["labels"].get("app") == "cart":
                assert "sidecar.istio.io/status" not in pod["metadata"]["annotations"]
                assert [c["name"] for c in pod["spec"]["containers"]] == ["cart"]
        for pod in store.list(PODS, "istio-system"):
            labels = pod["metadata"]["labels"]
            if labels.get("k8s-app") == "istio-cni-node":
                assert pod["status"]["podIP"] == pod["status"]["hostIP"]
                assert "sidecar.istio.io/status" not in (pod["metadata"].get("annotations") or {})

        def page_has() -> bool:
            page = sb.mesh.page.decode()
            return (
                _metric(
                    page,
                    "istio_tcp_connections_opened_total",
                    reporter="destination",
                    destination_workload="cart",
                    destination_workload_namespace="shop",
                )
                > 0
                and _metric(
                    page, "istio_requests_total", reporter="waypoint", destination_workload="cart"
                )
                > 0
                and _metric(page, "istio_tcp_sent_bytes_total", destination_workload="api") > 0
            )

        await wait_for(page_has, within=10, what="ztunnel and waypoint metrics")
        page = sb.mesh.page.decode()
        # No waypoint in "plain": TCP only; ambient pods never report as sidecars.
        assert _metric(page, "istio_requests_total", destination_workload="api") == 0
        assert (
            _metric(
                page, "istio_requests_total", reporter="destination", destination_workload="cart"
            )
            == 0
        )
        # pilot_xds of the revision counts 3 ztunnels and the waypoint pod.
        assert _metric(page, "pilot_xds", revision="1-30-3", version="1.30.3") == 4

        # Removing the namespace label unenrolls the running pods (no restart).
        def unlabel(o: Obj) -> None:
            o["metadata"]["labels"].pop("istio.io/dataplane-mode")

        store.mutate(NAMESPACES, "", "plain", unlabel)
        await wait_for(
            lambda: all(
                ANNOTATION_REDIRECTION not in (p["metadata"].get("annotations") or {})
                for p in store.list(PODS, "plain")
            ),
            what="api unenrolled",
        )


async def test_ztunnel_upgrade_rolls_node_by_node_and_moves_xds() -> None:
    async with served(_scenario(revisions=[{"version": "1.30.3"}, {"version": "1.31.0"}])) as sb:
        store = sb.cluster.store

        def ztunnels() -> list[Obj]:
            return [
                p
                for p in store.list(PODS, "istio-system")
                if p["metadata"]["labels"].get("app") == "ztunnel"
            ]

        await wait_for(lambda: len([p for p in ztunnels() if is_ready(p)]) == 3, what="ztunnels")

        def upgrade(o: Obj) -> None:
            c = o["spec"]["template"]["spec"]["containers"][0]
            c["image"] = "docker.io/istio/ztunnel:1.31.0"
            for e in c["env"]:
                if e["name"] in ("CA_ADDRESS", "XDS_ADDRESS"):
                    e["value"] = "istiod-1-31-0.istio-system.svc:15012"

        store.mutate(DAEMONSETS, "istio-system", "ztunnel", upgrade)
        most = 0
        for _ in range(1000):
            pods = [p for p in ztunnels() if not p["metadata"].get("deletionTimestamp")]
            most = max(most, len(pods))
            new = [p for p in pods if p["spec"]["containers"][0]["image"].endswith(":1.31.0")]
            if len(new) == 3 and len(pods) == 3 and all(is_ready(p) for p in new):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("ztunnel never finished rolling")
        assert most <= 4
        await wait_for(
            lambda: (
                _metric(sb.mesh.page.decode(), "pilot_xds", revision="1-31-0", version="1.31.0")
                == 3
            ),
            what="ztunnels connected to 1-31-0",
        )
        assert _metric(sb.mesh.page.decode(), "pilot_xds", revision="1-30-3", version="1.30.3") == 1
