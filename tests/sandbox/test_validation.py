"""Validating admission of Istio resources and istiod's webhook controller."""

from __future__ import annotations

import pytest

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.objects import DEPLOYMENTS, PODS
from istio_sandbox.istio.charts import render_crds, render_default_validator
from istio_sandbox.resources import BY_KEY, lookup
from istio_sandbox.store import Obj, StoreError
from tests.sandbox.controllers_support import (
    create,
    install_revision,
    namespace,
    revision_ready,
    running,
    wait_for,
)

VALIDATING = BY_KEY["admissionregistration.k8s.io/validatingwebhookconfigurations"]
CRDS = BY_KEY["apiextensions.k8s.io/customresourcedefinitions"]


def virtual_service(cluster: Cluster, ns: str, name: str) -> Obj:
    rt = lookup("networking.istio.io", "v1", "virtualservices", cluster.store.custom_types)
    assert rt is not None
    return cluster.store.create(
        rt,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"hosts": ["web"]},
        },
    )


def policies(cluster: Cluster) -> dict[str, list[str]]:
    return {
        c["metadata"]["name"]: [w.get("failurePolicy") for w in c["webhooks"]]
        for c in cluster.store.list(VALIDATING)
    }


async def revisionless_with_base(cluster: Cluster) -> None:
    for crd in render_crds():
        create(cluster, crd)
    install_revision(cluster, "1.30.3", "")
    create(cluster, render_default_validator("default"))


async def test_istiod_flips_its_validators_to_fail_once_serving() -> None:
    async with running() as cluster:
        await revisionless_with_base(cluster)
        assert set(policies(cluster)["istiod-default-validator"]) == {"Ignore"}
        await revision_ready(cluster, "")
        await wait_for(
            lambda: (
                policies(cluster)
                == {"istio-validator-istio-system": ["Fail"], "istiod-default-validator": ["Fail"]}
            ),
            what="validators fail closed",
        )


async def test_no_endpoint_for_a_fail_closed_validator_refuses_istio_resources() -> None:
    async with running() as cluster:
        await revisionless_with_base(cluster)
        # Before istiod serves, the validators are Ignore: creates go through unchecked.
        namespace(cluster, "shop")
        virtual_service(cluster, "shop", "early")
        await revision_ready(cluster, "")
        await wait_for(lambda: set(policies(cluster)["istiod-default-validator"]) == {"Fail"})
        virtual_service(cluster, "shop", "served")
        cluster.store.mutate(
            DEPLOYMENTS, "istio-system", "istiod", lambda o: o["spec"].update(replicas=0)
        )
        await wait_for(
            lambda: (
                not cluster.store.list(
                    PODS, "istio-system", lambda p: p["metadata"]["name"].startswith("istiod")
                )
            ),
            what="istiod gone",
        )
        with pytest.raises(StoreError) as refused:
            virtual_service(cluster, "shop", "late")
        assert refused.value.message == (
            'Internal error occurred: failed calling webhook "validation.istio.io": failed to '
            'call webhook: Post "https://istiod.istio-system.svc:443/validate?timeout=10s": '
            'no endpoints available for service "istiod"'
        )
        # Updates are validated too; status updates and other kinds are not.
        rt = lookup("networking.istio.io", "v1", "virtualservices", cluster.store.custom_types)
        assert rt is not None
        with pytest.raises(StoreError):
            cluster.store.mutate(rt, "shop", "served", lambda o: o["spec"].update(hosts=["x"]))


async def test_deleting_a_crd_deletes_every_object_of_its_kind() -> None:
    async with running() as cluster:
        for crd in render_crds():
            create(cluster, crd)
        namespace(cluster, "shop")
        virtual_service(cluster, "shop", "a")
        virtual_service(cluster, "shop", "b")
        crd = cluster.store.get(CRDS, "", "virtualservices.networking.istio.io")
        assert {c["type"] for c in crd["status"]["conditions"]} == {"Established", "NamesAccepted"}
        cluster.store.delete(CRDS, "", "virtualservices.networking.istio.io")
        assert (
            lookup("networking.istio.io", "v1", "virtualservices", cluster.store.custom_types)
            is None
        )
        store_rt = BY_KEY.get("networking.istio.io/virtualservices")
        assert store_rt is None
        # Re-created, the kind is empty: the objects went with the definition.
        create(cluster, crd | {"metadata": {"name": crd["metadata"]["name"]}, "status": {}})
        rt = lookup("networking.istio.io", "v1", "virtualservices", cluster.store.custom_types)
        assert rt is not None and cluster.store.list(rt) == []
