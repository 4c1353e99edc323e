# The client models type every field Optional; a None here is a test failure anyway.
# mypy: disable-error-code="union-attr,index,operator,arg-type"
"""CustomResourceDefinitions serve their resources, as apiextensions-apiserver does.

Runs against the sandbox by default and against ``KUBECONFIG`` with ``pytest -m realcluster``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import KubeTarget

RUNS_ON_REAL_CLUSTER = True
GROUP = "sandbox.example.com"


@pytest.fixture
def widget_crd(api: k8s.ApiClient) -> Iterator[str]:
    """A namespaced CRD ``widgets<suffix>.sandbox.example.com`` (v1 storage, v1beta1 served)."""
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    ext = k8s.ApiextensionsV1Api(api)
    schema = k8s.V1JSONSchemaProps(type="object", x_kubernetes_preserve_unknown_fields=True)
    ext.create_custom_resource_definition(
        k8s.V1CustomResourceDefinition(
            metadata=k8s.V1ObjectMeta(name=f"{plural}.{GROUP}"),
            spec=k8s.V1CustomResourceDefinitionSpec(
                group=GROUP,
                scope="Namespaced",
                names=k8s.V1CustomResourceDefinitionNames(
                    plural=plural, singular=plural[:-1], kind=f"W{plural[1:-1]}"
                ),
                versions=[
                    k8s.V1CustomResourceDefinitionVersion(
                        name=v,
                        served=True,
                        storage=v == "v1",
                        schema=k8s.V1CustomResourceValidation(open_apiv3_schema=schema),
                    )
                    for v in ("v1", "v1beta1")
                ],
            ),
        )
    )
    deadline = time.monotonic() + 20
    while True:
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        conds = {c.type: c.status for c in (crd.status.conditions or [])}
        if conds.get("Established") == "True" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert conds.get("Established") == "True"
    try:
        yield plural
    finally:
        with contextlib.suppress(k8s.ApiException):
            ext.delete_custom_resource_definition(f"{plural}.{GROUP}")


def _widget(name: str, kind: str, version: str = "v1") -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": kind,
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"size": 1},
    }


def test_crd_serves_crud_list_and_discovery(
    api: k8s.ApiClient, namespace: str, widget_crd: str
) -> None:
    custom = k8s.CustomObjectsApi(api)
    kind = f"W{widget_crd[1:-1]}"
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", namespace, widget_crd, _widget("one", kind)
    )
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    custom.create_namespaced_custom_object(
        GROUP, "v1beta1", namespace, widget_crd, _widget("two", kind, "v1beta1")
    )
    items = custom.list_namespaced_custom_object(GROUP, "v1", namespace, widget_crd)["items"]
    assert sorted(i["metadata"]["name"] for i in items) == ["one", "two"]
    patched = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, widget_crd, "one", {"spec": {"size": 3}}
    )
    assert patched["spec"]["size"] == 3
    got = custom.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "one")
    assert got["spec"]["size"] == 3
    selected = custom.list_cluster_custom_object(GROUP, "v1", widget_crd, label_selector="team=a")
    assert len([i for i in selected["items"] if i["metadata"]["namespace"] == namespace]) == 2
    groups = {g.name: g for g in k8s.ApisApi(api).get_api_versions().groups}
    assert {v.version for v in groups[GROUP].versions} >= {"v1", "v1beta1"}
    custom.delete_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "two")
    with pytest.raises(k8s.ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "two")
    assert gone.value.status == 404


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
def test_kubectl_gets_custom_resources(
    kube: KubeTarget, api: k8s.ApiClient, namespace: str, widget_crd: str
) -> None:
    kind = f"W{widget_crd[1:-1]}"
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, "v1", namespace, widget_crd, _widget("one", kind)
    )
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), "-n", namespace, "get", widget_crd],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "one" in out


def test_deleting_a_crd_deletes_its_objects(
    api: k8s.ApiClient, namespace: str, widget_crd: str
) -> None:
    custom = k8s.CustomObjectsApi(api)
    kind = f"W{widget_crd[1:-1]}"
    custom.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, _widget("a", kind))
    k8s.ApiextensionsV1Api(api).delete_custom_resource_definition(f"{widget_crd}.{GROUP}")
    deadline = time.monotonic() + 30
    while True:
        try:
            custom.list_namespaced_custom_object(GROUP, "v1", namespace, widget_crd)
        except k8s.ApiException as err:
            assert err.status == 404
            break
        assert time.monotonic() < deadline, "the CRD's resource is still served"
        time.sleep(0.2)
