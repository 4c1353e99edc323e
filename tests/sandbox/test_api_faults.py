"""Sandbox-only behaviour: API faults, request accounting and admin endpoints."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import KubeTarget, ServedSandbox


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http
        http.post("/sandbox/faults/clear")


def _set_faults(http: httpx.Client, *api_faults: dict[str, Any]) -> None:
    resp = http.put("/sandbox/faults", json={"api": list(api_faults)})
    assert resp.status_code == 200, resp.text


def _count(http: httpx.Client, verb: str, resource: str, namespace: str) -> int:
    rows = http.get("/sandbox/stats").json()["requests"]
    return sum(
        r["count"]
        for r in rows
        if (r["verb"], r["resource"], r["namespace"]) == (verb, resource, namespace)
    )


def test_429_has_retry_after_and_status(admin: httpx.Client, namespace: str) -> None:
    _set_faults(admin, {"kind": "status", "code": 429, "retry_after_s": 3, "count": 1})
    resp = admin.get(f"/api/v1/namespaces/{namespace}/configmaps")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert resp.json()["reason"] == "TooManyRequests"
    assert admin.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
def test_kubectl_honours_429_retry_after(
    admin: httpx.Client, kube: KubeTarget, namespace: str
) -> None:
    _set_faults(
        admin,
        {
            "kind": "status",
            "code": 429,
            "retry_after_s": 1,
            "count": 2,
            "verbs": ["list"],
            "resources": ["configmaps"],
            "namespaces": [namespace],
        },
    )
    admin.post("/sandbox/stats/reset")
    started = time.monotonic()
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), "get", "cm", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 2.0  # two Retry-After waits of 1 s
    assert _count(admin, "list", "configmaps", namespace) == 3
    assert admin.get("/sandbox/faults").json()["api"][0]["count"] == 0


def test_fault_matching_by_verb_resource_namespace(admin: httpx.Client, namespace: str) -> None:
    _set_faults(admin, {"kind": "status", "code": 503, "verbs": ["get"], "resources": ["secrets"]})
    assert admin.get(f"/api/v1/namespaces/{namespace}/secrets/x").status_code == 503
    assert admin.get(f"/api/v1/namespaces/{namespace}/configmaps/x").status_code == 404
    assert admin.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 200
    _set_faults(admin, {"kind": "status", "code": 500, "namespaces": ["elsewhere"]})
    assert admin.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 200


def test_probability_zero_never_fires(admin: httpx.Client, namespace: str) -> None:
    _set_faults(admin, {"kind": "status", "code": 500, "probability": 0.0})
    codes = {admin.get(f"/api/v1/namespaces/{namespace}/pods").status_code for _ in range(20)}
    assert codes == {200}


def test_conflict_fault_hits_writes_only(admin: httpx.Client, namespace: str) -> None:
    _set_faults(admin, {"kind": "conflict", "count": 1})
    cm = {"metadata": {"name": "c"}, "data": {}}
    first = admin.post(f"/api/v1/namespaces/{namespace}/configmaps", json=cm)
    assert first.status_code == 409 and first.json()["reason"] == "Conflict"
    assert admin.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200
    assert admin.post(f"/api/v1/namespaces/{namespace}/configmaps", json=cm).status_code == 201


def test_latency_and_drop(admin: httpx.Client, namespace: str) -> None:
    _set_faults(admin, {"kind": "latency", "latency_ms": 300, "count": 1})
    started = time.monotonic()
    assert admin.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
    assert time.monotonic() - started >= 0.3
    _set_faults(admin, {"kind": "drop", "count": 1})
    with pytest.raises(httpx.TransportError):
        admin.get(f"/api/v1/namespaces/{namespace}/pods")
    assert admin.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200


def test_admin_endpoints_are_never_faulted_nor_counted(admin: httpx.Client) -> None:
    _set_faults(admin, {"kind": "status", "code": 500})
    admin.post("/sandbox/stats/reset")
    assert admin.get("/healthz").text == "ok"
    assert admin.get("/api/v1/namespaces").status_code == 500
    stats = admin.get("/sandbox/stats").json()
    assert stats["total"] == 1 and stats["writes"] == 0
    assert stats["requests"] == [
        {"verb": "list", "resource": "namespaces", "namespace": "", "count": 1}
    ]
    bad = admin.put("/sandbox/faults", json={"api": [{"kind": "explode"}]})
    assert bad.status_code == 400 and "kind" in bad.json()["message"]


def test_accounting_uses_kubernetes_verbs(admin: httpx.Client, namespace: str) -> None:
    admin.post("/sandbox/stats/reset")
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    admin.post(base, json={"metadata": {"name": "a", "labels": {"x": "1"}}})
    admin.get(f"{base}/a")
    admin.patch(
        f"{base}/a",
        content=b'{"data":{"k":"v"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    admin.get(base, params={"watch": "true", "timeoutSeconds": "0"})
    admin.delete(base, params={"labelSelector": "x=1"})
    verbs = {
        verb: _count(admin, verb, "configmaps", namespace)
        for verb in ("create", "get", "patch", "watch", "deletecollection")
    }
    assert verbs == {"create": 1, "get": 1, "patch": 1, "watch": 1, "deletecollection": 1}
    assert admin.get("/sandbox/stats").json()["writes"] == 3
    assert admin.get(base).json()["items"] == []
