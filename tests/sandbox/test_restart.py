"""Restarting the API server with its cluster kept (``SandboxProcess.restart``), killing it
outright (``kill``), and a rollout that goes on across a restart."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from istio_sandbox.server import SandboxProcess

SCENARIO = """
name: restart
timings: {pod_start_s: 0.1, pod_ready_s: 1.0, istiod_ready_s: 0.2}
revisions:
  - version: 1.30.3
tags: {default: 1-30-3}
namespaces:
  - name: shop
    labels: {istio-injection: enabled}
    workloads:
      - name: web
        replicas: 2
"""
DEPLOY = "/apis/apps/v1/namespaces/shop/deployments/web"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    scenario = tmp_path / "restart.yaml"
    scenario.write_text(SCENARIO)
    sb = SandboxProcess(scenario, workdir=tmp_path / "work", rbac=True, startup_timeout_s=60)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def _wait_for(fact: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not fact():
        assert time.monotonic() < deadline, "the fact never became true"
        time.sleep(0.05)


def _rolled_out(http: httpx.Client) -> bool:
    dep = http.get(DEPLOY).json()
    status, want = dep.get("status") or {}, dep["spec"]["replicas"]
    return bool(
        status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("readyReplicas") == want
        and status.get("replicas") == want
    )


def test_restart_keeps_objects_tokens_rbac_faults_and_port(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    url, https_url = sandbox.url, sandbox.https_url
    http = httpx.Client(base_url=url, timeout=10)
    cm = http.post("/api/v1/namespaces/shop/configmaps", json={"metadata": {"name": "kept"}}).json()
    binding = {
        "metadata": {"name": "default-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}],
    }
    http.post("/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings", json=binding)
    token = sandbox.issue_token(service_account="shop/default")
    faults = {"api": [{"kind": "latency", "latency_ms": 1, "namespaces": ["elsewhere"]}]}
    http.put("/sandbox/faults", json=faults)
    _, log_next = sandbox.requests()
    http.close()

    sandbox.restart()

    assert (sandbox.url, sandbox.https_url) == (url, https_url)
    http = httpx.Client(base_url=url, timeout=10)
    kept = http.get("/api/v1/namespaces/shop/configmaps/kept").json()
    assert kept["metadata"]["uid"] == cm["metadata"]["uid"]
    assert kept["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    new = http.post("/api/v1/namespaces/shop/configmaps", json={"metadata": {"name": "new"}})
    assert int(new.json()["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])
    assert http.get("/sandbox/rbac").json() == {"enforced": True}
    assert http.get("/sandbox/faults").json()["api"][0]["namespaces"] == ["elsewhere"]
    # The token still authenticates, and RBAC still decides.
    auth = {"Authorization": f"Bearer {token.token}"}
    assert http.get("/api/v1/namespaces/shop/pods", headers=auth).status_code == 200
    assert http.delete("/api/v1/namespaces/shop/configmaps/kept", headers=auth).status_code == 403
    entries, _ = sandbox.requests(log_next)
    assert entries and entries[0]["seq"] == log_next
    _wait_for(lambda: _rolled_out(http))
    http.close()
    if shutil.which("kubectl") and sandbox.https_url:
        kubeconfig = sandbox.write_kubeconfig_for(token, tmp_path / "sa.kubeconfig")
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "configmap", "kept", "-n", "shop"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def test_watches_from_before_a_restart_get_410(sandbox: SandboxProcess) -> None:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        rv = http.get("/api/v1/namespaces/shop/configmaps").json()["metadata"]["resourceVersion"]
    sandbox.restart()
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        params = {"watch": "true", "resourceVersion": str(int(rv) - 1), "timeoutSeconds": "1"}
        with http.stream("GET", "/api/v1/namespaces/shop/configmaps", params=params) as stream:
            events: list[dict[str, Any]] = [json.loads(x) for x in stream.iter_lines() if x]
        assert events[0]["type"] == "ERROR"
        assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")
        fresh = http.get("/api/v1/namespaces/shop/configmaps").json()["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": fresh, "timeoutSeconds": "1"}
        with http.stream("GET", "/api/v1/namespaces/shop/configmaps", params=params) as stream:
            assert [x for x in stream.iter_lines() if x] == []


def test_a_rollout_completes_across_a_restart(sandbox: SandboxProcess) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}}
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        _wait_for(lambda: _rolled_out(http))
        resp = http.patch(
            DEPLOY,
            content=json.dumps(patch).encode(),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        assert resp.status_code == 200
        assert not _rolled_out(http)  # new pods take a second to become Ready
    sandbox.restart()
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        _wait_for(lambda: _rolled_out(http))
        pods = http.get("/api/v1/namespaces/shop/pods", params={"labelSelector": "app=web"})
        live = [p for p in pods.json()["items"] if not p["metadata"].get("deletionTimestamp")]
        assert len(live) == 2
        assert all(p["metadata"]["annotations"].get("restartedAt") == "now" for p in live)


def test_kill_keeps_nothing_and_restart_starts_fresh(sandbox: SandboxProcess) -> None:
    url, pid = sandbox.url, sandbox.pid
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/api/v1/namespaces/shop/configmaps", json={"metadata": {"name": "lost"}})
    sandbox.kill()
    assert not sandbox.state_file.exists()
    sandbox.restart()
    assert sandbox.url == url and sandbox.pid != pid
    with httpx.Client(base_url=url, timeout=10) as http:
        lost = http.get("/api/v1/namespaces/shop/configmaps/lost")
        assert lost.status_code == 404
        assert http.get("/sandbox/rbac").json() == {"enforced": True}
