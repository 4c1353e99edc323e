"""Who is calling: bearer tokens for users and ServiceAccounts, ``system:admin`` without one,
401 for a token nobody issued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.sandbox.conftest import ServedSandbox


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http


def _issue(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post("/sandbox/tokens", json=body)
    assert resp.status_code == 201, resp.text
    issued: dict[str, Any] = resp.json()
    return issued


def _last_user(http: httpx.Client) -> str:
    nxt = http.get("/sandbox/requests", params={"since": 10**12}).json()["next"]
    entries = http.get("/sandbox/requests", params={"since": nxt - 1}).json()["requests"]
    user: str = entries[-1]["user"]
    return user


def test_user_token_names_the_user_and_adds_system_authenticated(admin: httpx.Client) -> None:
    issued = _issue(admin, {"user": "alice", "groups": ["devs"]})
    assert issued["user"] == "alice"
    assert issued["groups"] == ["devs", "system:authenticated"]
    assert issued["token"]
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert admin.get("/api/v1/namespaces", headers=headers).status_code == 200
    assert _last_user(admin) == "alice"
    admin.get("/api/v1/namespaces")
    assert _last_user(admin) == "system:admin"


def test_service_account_token_with_the_python_client(
    sandbox: ServedSandbox, admin: httpx.Client, namespace: str, tmp_path: Path
) -> None:
    issued = _issue(admin, {"serviceAccount": {"namespace": namespace, "name": "default"}})
    assert issued["user"] == f"system:serviceaccount:{namespace}:default"
    assert issued["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]
    kubeconfig = sandbox.write_kubeconfig_for(issued["token"], tmp_path / "sa.kubeconfig")
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        k8s.CoreV1Api(api).list_namespaced_pod(namespace)
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert _last_user(admin) == issued["user"]


def test_unknown_token_is_a_401_status(admin: httpx.Client) -> None:
    for header in ("Bearer nobody-issued-this", "Basic YWxpY2U6c2VjcmV0"):
        resp = admin.get("/api/v1/namespaces", headers={"Authorization": header})
        assert resp.status_code == 401
        assert resp.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    # Discovery is authenticated too; admin endpoints are not.
    assert admin.get("/apis", headers={"Authorization": "Bearer x"}).status_code == 401
    assert admin.get("/sandbox/stats", headers={"Authorization": "Bearer x"}).status_code == 200


def test_a_deleted_service_account_token_stops_working(admin: httpx.Client, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    assert admin.post(base, json={"metadata": {"name": "robot"}}).status_code == 201
    issued = _issue(admin, {"serviceAccount": {"namespace": namespace, "name": "robot"}})
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert admin.get(base, headers=headers).status_code == 200
    admin.delete(f"{base}/robot")
    assert admin.get(base, headers=headers).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user": ""},
        {"user": "alice", "serviceAccount": {"namespace": "a", "name": "b"}},
        {"serviceAccount": {"namespace": "Not_A_Namespace", "name": "b"}},
        {"user": "alice", "groups": "devs"},
    ],
)
def test_malformed_token_requests_are_400(admin: httpx.Client, body: dict[str, Any]) -> None:
    resp = admin.post("/sandbox/tokens", json=body)
    assert resp.status_code == 400 and resp.json()["reason"] == "BadRequest"
