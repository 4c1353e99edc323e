"""End to end through HTTP: kubectl drives rollouts that the sandbox controllers carry out."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from istio_sandbox.controllers.injector import SERVICES
from istio_sandbox.controllers.objects import NAMESPACES, WEBHOOKS
from istio_sandbox.istio.charts import render_istiod
from tests.sandbox.conftest import KubeTarget, ServedSandbox

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


def kubectl(kube: KubeTarget, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_rollout_restart_then_rollout_status(kube: KubeTarget, namespace: str) -> None:
    manifest = textwrap.dedent(
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          replicas: 3
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              containers: [{{name: web, image: "nginx:1.27"}}]
        """
    )
    kubectl(kube, "apply", "-f", "-", stdin=manifest)
    out = kubectl(kube, "-n", namespace, "rollout", "status", "deployment/web", "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in out
    before = set(kubectl(kube, "-n", namespace, "get", "pods", "-o", "name").split())
    assert len(before) == 3

    kubectl(kube, "-n", namespace, "rollout", "restart", "deployment/web")
    out = kubectl(kube, "-n", namespace, "rollout", "status", "deployment/web", "--timeout=30s")
    assert "successfully rolled out" in out
    rs = kubectl(
        kube,
        "-n",
        namespace,
        "get",
        "rs",
        "-o",
        "jsonpath={range .items[*]}{.spec.replicas}{' '}{end}",
    )
    assert sorted(rs.split()) == ["0", "3"]
    history = kubectl(kube, "-n", namespace, "get", "events", "-o", "jsonpath={.items[*].reason}")
    assert "ScalingReplicaSet" in history and "SuccessfulCreate" in history


def kubectl_fails(kube: KubeTarget, *args: str) -> str:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0, f"kubectl {' '.join(args)} unexpectedly succeeded"
    return proc.stderr


def test_pods_created_over_http_go_through_the_injector(
    kube: KubeTarget, sandbox: ServedSandbox, namespace: str
) -> None:
    # Only the webhook and Service of revision 1-32-0 exist: its istiod has no endpoints.
    bundle = render_istiod("1.32.0", "1-32-0")
    webhook = next(o for o in bundle if o["kind"] == "MutatingWebhookConfiguration")
    service = next(o for o in bundle if o["kind"] == "Service")
    sandbox.call(lambda: sandbox.cluster.store.create(WEBHOOKS, webhook))
    if sandbox.cluster.store.try_get(NAMESPACES, "", "istio-system") is None:
        sandbox.call(
            lambda: sandbox.cluster.store.create(NAMESPACES, {"metadata": {"name": "istio-system"}})
        )
    sandbox.call(lambda: sandbox.cluster.store.create(SERVICES, service))
    try:
        kubectl(kube, "label", "namespace", namespace, "istio.io/rev=1-32-0")
        err = kubectl_fails(kube, "-n", namespace, "run", "probe", "--image=busybox:1.36")
        assert "Internal error occurred: failed calling webhook" in err
        assert 'no endpoints available for service "istiod-1-32-0"' in err
        kubectl(kube, "label", "namespace", namespace, "istio.io/rev-")
        kubectl(kube, "-n", namespace, "run", "probe", "--image=busybox:1.36")
        kubectl(
            kube, "-n", namespace, "wait", "--for=condition=Ready", "pod/probe", "--timeout=30s"
        )
        logs = kubectl(kube, "-n", namespace, "logs", "probe", "--tail=3")
        assert len(logs.splitlines()) == 3
    finally:
        sandbox.call(
            lambda: sandbox.cluster.store.delete(WEBHOOKS, "", webhook["metadata"]["name"])
        )
        sandbox.call(
            lambda: sandbox.cluster.store.delete(SERVICES, "istio-system", "istiod-1-32-0")
        )
