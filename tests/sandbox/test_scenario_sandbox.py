"""The demo scenario served by a sandbox process, seen through the real kubernetes client."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from istio_sandbox.faults import Faults, TrafficFault
from istio_sandbox.scenario import load_scenario
from istio_sandbox.server import SandboxProcess, SandboxStartError

pytestmark = pytest.mark.slow


def _api(sandbox: SandboxProcess) -> Any:
    # Any: the client's generated models make every field Optional.
    api_client = config.new_client_from_config(str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api_client)


def _all_ready(core: Any) -> tuple[int, int]:
    pods = core.list_pod_for_all_namespaces().items
    running = [p for p in pods if p.status.phase == "Running"]
    ready = [
        p
        for p in running
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return len(running), len(ready)


async def test_demo_comes_up_with_every_pod_ready_and_injected(
    sandbox_factory: Callable[..., Awaitable[SandboxProcess]],
) -> None:
    sandbox = await sandbox_factory("demo", context="demo-ctx")
    kubeconfig = yaml.safe_load(sandbox.kubeconfig.read_text())
    assert kubeconfig["current-context"] == "demo-ctx"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == sandbox.url
    core = _api(sandbox)
    deadline = time.monotonic() + 60
    while True:
        running, ready = await asyncio.to_thread(_all_ready, core)
        if running and running == ready:
            break
        assert time.monotonic() < deadline, f"{ready}/{running} pods ready after 60 s"
        await asyncio.sleep(0.2)
    namespaces = {ns.metadata.name for ns in core.list_namespace().items}
    expected = {ns.name for ns in load_scenario("demo").namespaces} | {"istio-system"}
    assert expected <= namespaces
    web = core.list_namespaced_pod("frontend", label_selector="app=web").items
    assert len(web) == 3
    for pod in web:
        assert pod.metadata.annotations["istio.io/rev"] == "1-30-3"
        status = json.loads(pod.metadata.annotations["sidecar.istio.io/status"])
        assert status["revision"] == "1-30-3"
        images = {c.name: c.image for c in pod.spec.containers + (pod.spec.init_containers or [])}
        assert images["istio-proxy"] == "docker.io/istio/proxyv2:1.30.3"
    legacy = core.list_namespaced_pod("legacy").items
    assert legacy and all("istio.io/rev" not in (p.metadata.annotations or {}) for p in legacy)
    page = sandbox.metrics()
    assert 'pilot_xds{revision="1-30-3",version="1.30.3"}' in page
    assert 'destination_workload="legacy-api"' not in page


async def test_admin_faults_round_trip(
    sandbox_factory: Callable[..., Awaitable[SandboxProcess]],
) -> None:
    sandbox = await sandbox_factory("bad-canary")
    faults = await asyncio.to_thread(sandbox.faults)
    assert faults.traffic[0].revision == "1-31-0"
    new = Faults(traffic=[TrafficFault(namespaces=["cart"], error_ratio=0.5)])
    await asyncio.to_thread(sandbox.set_faults, new)
    assert await asyncio.to_thread(sandbox.faults) == new
    await asyncio.to_thread(sandbox.clear_faults)
    assert await asyncio.to_thread(sandbox.faults) == Faults()


def test_bad_scenario_stops_the_child_with_its_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nrevisions: []\n")
    with pytest.raises(SandboxStartError, match="revisions: List should have at least 1 item"):
        SandboxProcess(path, workdir=tmp_path / "work", startup_timeout_s=20).start()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
async def test_kubectl_reads_the_sandbox(
    sandbox_factory: Callable[..., Awaitable[SandboxProcess]],
) -> None:
    sandbox = await sandbox_factory("demo")
    out = await asyncio.to_thread(
        subprocess.run,
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "get", "ns", "-L", "istio.io/rev"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert rows["payments"][-1] == "canary"


async def test_revisionless_comes_up_injected_by_the_revisionless_istiod(
    sandbox_factory: Callable[..., Awaitable[SandboxProcess]],
) -> None:
    sandbox = await sandbox_factory("revisionless")
    core = _api(sandbox)
    deadline = time.monotonic() + 60
    while True:
        running, ready = await asyncio.to_thread(_all_ready, core)
        if running and running == ready:
            break
        assert time.monotonic() < deadline, f"{ready}/{running} pods ready after 60 s"
        await asyncio.sleep(0.2)
    api_client = config.new_client_from_config(str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
    admission = client.AdmissionregistrationV1Api(api_client)
    mutating = {w.metadata.name for w in admission.list_mutating_webhook_configuration().items}
    assert mutating == {"istio-sidecar-injector"}
    validator = admission.read_validating_webhook_configuration("istiod-default-validator")
    assert validator.webhooks[0].client_config.service.name == "istiod"
    apps = client.AppsV1Api(api_client)
    assert apps.read_namespaced_deployment("istiod", "istio-system").status.ready_replicas == 1
    scenario = load_scenario("revisionless")
    outside = {"legacy"}
    for ns in scenario.namespaces:
        for pod in core.list_namespaced_pod(ns.name).items:
            annotations = pod.metadata.annotations or {}
            labels = pod.metadata.labels or {}
            if ns.name in outside or labels.get("sidecar.istio.io/inject") == "false":
                assert "istio.io/rev" not in annotations, pod.metadata.name
                continue
            assert annotations["istio.io/rev"] == "default", pod.metadata.name
            status = json.loads(annotations["sidecar.istio.io/status"])
            assert status["revision"] == "default"
            images = {c.name: c.image for c in pod.spec.containers}
            assert images["istio-proxy"] == "docker.io/istio/proxyv2:1.30.3"
    gateways = core.list_namespaced_pod("istio-ingress").items
    assert len(gateways) == 2
    for pod in gateways:
        status = json.loads(pod.metadata.annotations["sidecar.istio.io/status"])
        assert status["templates"] == ["gateway"] and not pod.spec.init_containers
    assert core.list_namespaced_pod("reports").items
    page = sandbox.metrics()
    assert 'pilot_xds{revision="default",version="1.30.3"}' in page
    custom = client.CustomObjectsApi(api_client)
    vs = custom.list_namespaced_custom_object(
        "networking.istio.io", "v1", "frontend", "virtualservices"
    )
    assert [i["metadata"]["name"] for i in vs["items"]] == ["web"]
    deadline = time.monotonic() + 10
    while True:
        policy = admission.read_validating_webhook_configuration("istiod-default-validator")
        if policy.webhooks[0].failure_policy == "Fail" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert policy.webhooks[0].failure_policy == "Fail", "istiod fails its validators closed"
