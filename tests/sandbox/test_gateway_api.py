"""Gateway API gateways and waypoints: istiod's deployment controller renders a Deployment,
Service and ServiceAccount per Gateway with the proxy of the istiod that owns it."""

from __future__ import annotations

from istio_sandbox.api.handlers import delete_tree
from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.objects import DEPLOYMENTS, GATEWAYS, NAMESPACES, PODS
from istio_sandbox.istio.gateway_api import (
    ANNOTATION_BUNDLE_VERSION,
    gateway_object,
    render_gateway_api_crds,
)
from istio_sandbox.istio.names import PROXY_CONTAINER
from istio_sandbox.resources import BY_KEY, by_kind
from istio_sandbox.store import Obj
from tests.sandbox.controllers_support import (
    create,
    install_revision,
    is_ready,
    namespace,
    pods_of,
    revision_ready,
    running,
    set_tag,
    wait_for,
)

SERVICES = BY_KEY["/services"]
ACCOUNTS = BY_KEY["/serviceaccounts"]


def test_crds_are_the_standard_bundle() -> None:
    crds = {c["metadata"]["name"]: c for c in render_gateway_api_crds()}
    assert {
        "gatewayclasses.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
    } <= set(crds)
    assert "httproutes.gateway.networking.k8s.io" in crds
    for crd in crds.values():
        assert crd["metadata"]["annotations"][ANNOTATION_BUNDLE_VERSION] == "v1.2.1"
    gw = crds["gateways.gateway.networking.k8s.io"]["spec"]["versions"]
    assert gw[0]["name"] == "v1" and gw[0]["storage"]


async def _mesh(cluster: Cluster) -> None:
    install_revision(cluster, "1.30.3", "1-30-3")
    install_revision(cluster, "1.31.0", "1-31-0")
    set_tag(cluster, "default", "1-30-3")
    await revision_ready(cluster, "1-30-3")
    await revision_ready(cluster, "1-31-0")
    for crd in render_gateway_api_crds():
        create(cluster, crd)


def _pods_at(cluster: Cluster, ns: str, prefix: str, rev: str, version: str, n: int = 1) -> bool:
    pods = pods_of(cluster, ns, prefix)
    return len(pods) == n and all(
        is_ready(p)
        and p["metadata"]["annotations"].get("istio.io/rev") == rev
        and next(c["image"] for c in p["spec"]["containers"] if c["name"] == PROXY_CONTAINER)
        == f"docker.io/istio/proxyv2:{version}"
        for p in pods
    )


def _set_label(
    cluster: Cluster, rt_key: str, ns: str, name: str, key: str, value: str | None
) -> None:
    rt = GATEWAYS if rt_key == GATEWAYS.key else NAMESPACES

    def fn(o: Obj) -> None:
        labels = o["metadata"].setdefault("labels", {})
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value

    cluster.store.mutate(rt, ns, name, fn)


async def test_istio_gateway_is_rendered_by_its_owner_and_follows_it() -> None:
    async with running() as cluster:
        await _mesh(cluster)
        gc_rt = by_kind("GatewayClass", "gateway.networking.k8s.io/v1", cluster.store.custom_types)
        assert gc_rt is not None
        await wait_for(lambda: cluster.store.try_get(gc_rt, "", "istio"), what="GatewayClass")
        namespace(cluster, "edge")
        cluster.store.create(GATEWAYS, gateway_object("ingress", "edge", "istio"))
        await wait_for(
            lambda: _pods_at(cluster, "edge", "ingress-istio-", "1-30-3", "1.30.3"),
            what="gateway pods from the default tag's revision",
        )
        dep = cluster.store.get(DEPLOYMENTS, "edge", "ingress-istio")
        assert dep["metadata"]["ownerReferences"][0]["kind"] == "Gateway"
        assert (
            dep["metadata"]["labels"]["gateway.istio.io/managed"] == "istio.io-gateway-controller"
        )
        tlabels = dep["spec"]["template"]["metadata"]["labels"]
        assert tlabels["gateway.networking.k8s.io/gateway-name"] == "ingress"
        assert tlabels["sidecar.istio.io/inject"] == "false"
        pod = pods_of(cluster, "edge", "ingress-istio-")[0]
        assert "sidecar.istio.io/status" not in pod["metadata"]["annotations"]  # not injected
        svc = cluster.store.get(SERVICES, "edge", "ingress-istio")
        assert svc["spec"]["type"] == "LoadBalancer"
        assert [p["port"] for p in svc["spec"]["ports"]] == [15021, 80]
        assert cluster.store.get(ACCOUNTS, "edge", "ingress-istio")

        def programmed() -> bool:
            gw = cluster.store.get(GATEWAYS, "edge", "ingress")
            conds = {c["type"]: c["status"] for c in (gw.get("status") or {}).get("conditions", [])}
            return conds.get("Programmed") == "True"

        await wait_for(programmed, what="Programmed")

        # The Gateway's istio.io/rev label moves it to that revision: the template is
        # re-rendered and the pods roll.
        _set_label(cluster, GATEWAYS.key, "edge", "ingress", "istio.io/rev", "1-31-0")
        await wait_for(
            lambda: _pods_at(cluster, "edge", "ingress-istio-", "1-31-0", "1.31.0"),
            what="gateway pods from 1-31-0",
        )
        # Label removed, the namespace's label decides.
        _set_label(cluster, NAMESPACES.key, "", "edge", "istio.io/rev", "1-30-3")
        _set_label(cluster, GATEWAYS.key, "edge", "ingress", "istio.io/rev", None)
        await wait_for(
            lambda: _pods_at(cluster, "edge", "ingress-istio-", "1-30-3", "1.30.3"),
            what="back to 1-30-3 through the namespace label",
        )
        # Unlabelled again: the default tag decides, and moving it moves the gateway.
        _set_label(cluster, NAMESPACES.key, "", "edge", "istio.io/rev", None)
        set_tag(cluster, "default", "1-31-0")
        await wait_for(
            lambda: _pods_at(cluster, "edge", "ingress-istio-", "1-31-0", "1.31.0"),
            what="default tag moved",
        )
        # Deleting the Gateway deletes what istiod made for it.
        delete_tree(cluster.store, GATEWAYS, "edge", "ingress", False)
        assert cluster.store.try_get(DEPLOYMENTS, "edge", "ingress-istio") is None
        assert cluster.store.try_get(SERVICES, "edge", "ingress-istio") is None


async def test_waypoint_is_named_after_its_gateway() -> None:
    async with running() as cluster:
        await _mesh(cluster)
        namespace(cluster, "shop", {"istio.io/dataplane-mode": "ambient"})
        cluster.store.create(
            GATEWAYS,
            gateway_object(
                "waypoint", "shop", "istio-waypoint", labels={"istio.io/waypoint-for": "service"}
            ),
        )
        await wait_for(
            lambda: _pods_at(cluster, "shop", "waypoint-", "1-30-3", "1.30.3"), what="waypoint"
        )
        dep = cluster.store.get(DEPLOYMENTS, "shop", "waypoint")
        tlabels = dep["spec"]["template"]["metadata"]["labels"]
        assert tlabels["istio.io/dataplane-mode"] == "none"
        assert tlabels["istio.io/waypoint-for"] == "service"
        assert dep["metadata"]["labels"]["gateway.istio.io/managed"] == "istio.io-mesh-controller"
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["proxy", "waypoint"]
        svc = cluster.store.get(SERVICES, "shop", "waypoint")
        assert svc["spec"]["type"] == "ClusterIP"
        assert [p["port"] for p in svc["spec"]["ports"]] == [15008]
        # A gateway pinned to a tag that no istiod has is nobody's: nothing changes.
        _set_label(cluster, GATEWAYS.key, "shop", "waypoint", "istio.io/rev", "nope")
        before = cluster.store.get(DEPLOYMENTS, "shop", "waypoint")["metadata"]["generation"]
        await wait_for(lambda: True)
        assert (
            cluster.store.get(DEPLOYMENTS, "shop", "waypoint")["metadata"]["generation"] == before
        )
        assert all(p["metadata"]["namespace"] == "shop" for p in cluster.store.list(PODS, "shop"))
