# The client models type every field Optional; a None here is a test failure anyway.
# mypy: disable-error-code="union-attr,index,operator,arg-type"
"""What every cluster has and how deletes answer, as the official client and kubectl see it.

Runs against the sandbox by default and against ``KUBECONFIG`` with ``pytest -m realcluster``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import KubeTarget

RUNS_ON_REAL_CLUSTER = True


def test_system_namespaces_exist(api: k8s.ApiClient) -> None:
    names = {ns.metadata.name for ns in k8s.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    ns = k8s.CoreV1Api(api).read_namespace("kube-system")
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "kube-system"
    assert ns.status.phase == "Active"


def test_every_namespace_gets_a_default_service_account(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + 10
    while True:
        names = [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items]
        if "default" in names or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "default" in names
    assert core.read_namespaced_service_account("default", "kube-system").metadata.name


def test_nodes_are_registered_and_ready(api: k8s.ApiClient) -> None:
    nodes = k8s.CoreV1Api(api).list_node().items
    assert nodes
    for node in nodes:
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"
        assert node.status.node_info.kubelet_version.startswith("v1.")
        assert any(a.type == "InternalIP" for a in node.status.addresses)
        assert node.metadata.labels["kubernetes.io/hostname"] == node.metadata.name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
def test_kubectl_get_nodes_prints_status_and_version(kube: KubeTarget) -> None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), "get", "nodes"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert all(" Ready " in f" {line} " for line in out[1:])


def test_delete_answers_as_the_registry_does(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service(
        namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="web"),
            spec=k8s.V1ServiceSpec(selector={"app": "web"}, ports=[k8s.V1ServicePort(port=80)]),
        ),
    )
    # Service and Pod registries return the deleted object (ReturnDeletedObject).
    gone = core.delete_namespaced_service("web", namespace)
    assert isinstance(gone, k8s.V1Service) and gone.metadata.name == "web"
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cfg"), data={"a": "1"})
    )
    raw = core.delete_namespaced_config_map("cfg", namespace, _preload_content=False)

    body = json.loads(raw.data)
    assert body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"]["name"] == "cfg" and body["details"]["kind"] == "configmaps"
    with pytest.raises(k8s.ApiException) as missing:
        core.delete_namespaced_service("web", namespace)
    assert missing.value.status == 404
