"""Helm gateways as the ``gateway`` chart deploys them: opted in per pod in an unlabelled
namespace, revision chosen by the pod label ``istio.io/rev`` (``rev.object.`` webhooks)."""

from __future__ import annotations

import json

from istio_sandbox.controllers.objects import DEPLOYMENTS
from istio_sandbox.istio.names import ANNOTATION_REV, ANNOTATION_STATUS, PROXY_CONTAINER
from istio_sandbox.scenario import WorkloadSpec, workload_objects
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


def _proxy_image(pod: Obj) -> str:
    return next(c["image"] for c in pod["spec"]["containers"] if c["name"] == PROXY_CONTAINER)


def test_chart_shape() -> None:
    account, dep, svc = workload_objects(
        "istio-ingress", WorkloadSpec(name="istio-ingressgateway", helm_gateway=True)
    )
    tmeta = dep["spec"]["template"]["metadata"]
    assert tmeta["labels"]["sidecar.istio.io/inject"] == "true"
    assert tmeta["labels"]["istio"] == "ingressgateway"
    assert "istio.io/rev" not in tmeta["labels"]
    assert tmeta["annotations"]["inject.istio.io/templates"] == "gateway"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "auto"
    assert svc["spec"]["type"] == "LoadBalancer"
    assert account["kind"] == "ServiceAccount"
    _, dep, _ = workload_objects(
        "gw", WorkloadSpec(name="gw", helm_gateway=True, revision="1-31-0")
    )
    assert dep["spec"]["template"]["metadata"]["labels"]["istio.io/rev"] == "1-31-0"


async def test_gateway_follows_its_pod_rev_label_after_a_restart() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.30.3", "1-30-3")
        install_revision(cluster, "1.31.0", "1-31-0")
        set_tag(cluster, "default", "1-30-3")
        set_tag(cluster, "stable", "1-31-0")
        await revision_ready(cluster, "1-30-3")
        await revision_ready(cluster, "1-31-0")
        namespace(cluster, "istio-ingress")  # no injection label
        for obj in workload_objects(
            "istio-ingress", WorkloadSpec(name="istio-ingressgateway", helm_gateway=True)
        ):
            create(cluster, obj)

        def pods_at(rev: str, version: str) -> bool:
            pods = pods_of(cluster, "istio-ingress")
            return len(pods) == 1 and all(
                is_ready(p)
                and p["metadata"]["annotations"].get(ANNOTATION_REV) == rev
                and _proxy_image(p).endswith(f":{version}")
                and json.loads(p["metadata"]["annotations"][ANNOTATION_STATUS])["templates"]
                == ["gateway"]
                for p in pods
            )

        # No istio.io/rev label: the default tag's object. webhook serves it.
        await wait_for(lambda: pods_at("1-30-3", "1.30.3"), what="injected by default")

        def label(value: str) -> None:
            def fn(o: Obj) -> None:
                o["spec"]["template"]["metadata"]["labels"]["istio.io/rev"] = value

            cluster.store.mutate(DEPLOYMENTS, "istio-ingress", "istio-ingressgateway", fn)

        # The template gains istio.io/rev=<rev>: the rollout injects with that revision.
        label("1-31-0")
        await wait_for(lambda: pods_at("1-31-0", "1.31.0"), what="injected by 1-31-0")
        # A tag works the same way (the tag's rev.object. webhook); the pod records the
        # revision behind the tag, never the tag.
        label("stable")
        await wait_for(
            lambda: (
                pods_at("1-31-0", "1.31.0")
                and all(
                    p["metadata"]["labels"].get("istio.io/rev") == "stable"
                    for p in pods_of(cluster, "istio-ingress")
                )
            ),
            what="injected through the stable tag",
        )
