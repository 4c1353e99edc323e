# The client models type every field Optional; a None here is a test failure anyway.
# mypy: disable-error-code="union-attr,index,operator,arg-type"
"""kubectl v1.32 against the API: get, label, annotate, rollout, apply, delete, get -w.

Runs against the sandbox by default and against ``KUBECONFIG`` with ``pytest -m realcluster``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import KubeTarget

RUNS_ON_REAL_CLUSTER = True

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


def kubectl(
    kube: KubeTarget, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def _manifest(namespace: str, name: str, labels: dict[str, str] | None = None) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name, **(labels or {})},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }
    return json.dumps(doc)


def test_get_wide_prints_server_side_columns(kube: KubeTarget, namespace: str) -> None:
    kubectl(kube, "create", "-f", "-", stdin=_manifest(namespace, "web"))
    out = kubectl(kube, "get", "deployments", "-n", namespace, "-o", "wide").stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "IMAGES" in header and "SELECTOR" in header
    assert "registry.k8s.io/pause:3.9" in out and "app=web" in out
    pods_header = kubectl(kube, "get", "pods", "-A", "-o", "wide").stdout.splitlines()
    if pods_header:
        assert pods_header[0].split()[:6] == [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
        ]


def test_label_and_annotate(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    kubectl(kube, "label", "namespace", namespace, "istio.io/rev=1-31-0")
    kubectl(kube, "label", "namespace", namespace, "istio-injection-")
    kubectl(kube, "annotate", "namespace", namespace, "example.com/owner=sre")
    ns = k8s.CoreV1Api(api).read_namespace(namespace)
    assert ns.metadata.labels["istio.io/rev"] == "1-31-0"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == namespace
    assert ns.metadata.annotations["example.com/owner"] == "sre"
    shown = kubectl(kube, "get", "ns", "-l", "istio.io/rev in (1-31-0)", "-o", "name").stdout
    assert shown.split() == [f"namespace/{namespace}"]
    bad = kubectl(kube, "label", "namespace", namespace, "bad key!=x", check=False)
    assert bad.returncode != 0 and "metadata.labels: Invalid value" in bad.stderr


def test_rollout_restart_then_status(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    kubectl(kube, "create", "-f", "-", stdin=_manifest(namespace, "web"))
    kubectl(kube, "rollout", "restart", "deployment/web", "-n", namespace)
    dep = k8s.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert "kubectl.kubernetes.io/restartedAt" in dep.spec.template.metadata.annotations
    assert dep.metadata.generation == 2
    if kube.sandbox is not None and kube.sandbox._controllers is None:
        pytest.skip("no controllers: nothing rolls the deployment out")
    status = kubectl(kube, "rollout", "status", "deployment/web", "-n", namespace, "--timeout=20s")
    assert "successfully rolled out" in status.stdout


def test_apply_server_side_twice(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    first = kubectl(kube, "apply", "--server-side", "-f", "-", stdin=_manifest(namespace, "app"))
    assert "serverside-applied" in first.stdout
    kubectl(
        kube,
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=_manifest(namespace, "app", {"istio.io/rev": "1-31-0"}),
    )
    dep = k8s.AppsV1Api(api).read_namespaced_deployment("app", namespace)
    assert dep.metadata.labels == {"app": "app", "istio.io/rev": "1-31-0"}
    assert any(
        m.manager == "kubectl" and m.operation == "Apply" for m in dep.metadata.managed_fields
    )


def test_delete_pod(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="lonely"),
        spec=k8s.V1PodSpec(
            containers=[k8s.V1Container(name="app", image="registry.k8s.io/pause:3.9")],
            termination_grace_period_seconds=0,
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    out = kubectl(kube, "delete", "pod", "lonely", "-n", namespace, "--timeout=20s")
    assert 'pod "lonely" deleted' in out.stdout
    missing = kubectl(kube, "get", "pod", "lonely", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_get_watch_sees_a_new_object(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    proc = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(kube.kubeconfig),
            "get",
            "configmaps",
            "-w",
            "-n",
            namespace,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        time.sleep(1.0)  # let kubectl list and open its watch
        k8s.CoreV1Api(api).create_namespaced_config_map(
            namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="fresh"))
        )
        # However slowly kubectl starts on a busy machine, the object shows within 30 s.
        deadline = time.monotonic() + 30
        while not any(line.split()[:1] == ["fresh"] for line in seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=remaining))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert any(line.split()[:1] == ["fresh"] for line in seen), (seen, stderr.read())


def test_bad_selector_from_kubectl(kube: KubeTarget, namespace: str) -> None:
    res = kubectl(kube, "get", "pods", "-n", namespace, "-l", "app in (a", check=False)
    assert res.returncode != 0
    assert "unable to parse requirement" in res.stderr or "unable to parse" in res.stderr


def test_imperative_create_sends_protobuf(
    kube: KubeTarget, api: k8s.ApiClient, namespace: str
) -> None:
    # kubectl's generators post protobuf bodies; a sandbox that only read JSON answered 415.
    created = f"{namespace}-x"
    kubectl(kube, "create", "namespace", created)
    try:
        labels = k8s.CoreV1Api(api).read_namespace(created).metadata.labels
        assert labels["kubernetes.io/metadata.name"] == created
    finally:
        kubectl(kube, "delete", "namespace", created, "--wait=false")
    kubectl(kube, "create", "configmap", "cfg", "-n", namespace, "--from-literal=a=b")
    kubectl(kube, "create", "secret", "generic", "pw", "-n", namespace, "--from-literal=pw=s3")
    kubectl(kube, "create", "serviceaccount", "robot", "-n", namespace)
    core = k8s.CoreV1Api(api)
    assert core.read_namespaced_config_map("cfg", namespace).data == {"a": "b"}
    assert core.read_namespaced_secret("pw", namespace).data == {"pw": "czM="}
    assert core.read_namespaced_service_account("robot", namespace).metadata.name == "robot"
    again = kubectl(kube, "create", "configmap", "cfg", "-n", namespace, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    if kube.is_sandbox:
        # Kinds whose protobuf schema the sandbox does not carry: a 415 that says what to do.
        refused = kubectl(
            kube, "create", "deployment", "web", "--image=nginx", "-n", namespace, check=False
        )
        assert refused.returncode != 0 and "send JSON" in refused.stderr
