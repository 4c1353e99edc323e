"""Access reviews (``authorization.k8s.io/v1``) through the official Python client and
``kubectl auth can-i`` with a token kubeconfig."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import ServedSandbox, write_kubeconfig

RBAC = "/apis/rbac.authorization.k8s.io/v1"
kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        http.put("/sandbox/rbac", json={"enforced": True})
        try:
            yield http
        finally:
            http.put("/sandbox/rbac", json={"enforced": False})


def _token(admin: httpx.Client, **body: Any) -> str:
    token: str = admin.post("/sandbox/tokens", json=body).json()["token"]
    return token


def _client(sandbox: ServedSandbox, token: str) -> k8s.ApiClient:
    config = k8s.Configuration(host=sandbox.url, api_key={"authorization": f"Bearer {token}"})
    return k8s.ApiClient(config)


def _grant_pod_reading(admin: httpx.Client, namespace: str, user: str) -> None:
    role = {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
    }
    assert admin.post(f"{RBAC}/namespaces/{namespace}/roles", json=role).status_code == 201
    binding = {
        "metadata": {"name": f"{user}-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    resp = admin.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=binding)
    assert resp.status_code == 201


def _ssar(api: k8s.ApiClient, **attrs: str) -> k8s.V1SubjectAccessReviewStatus:
    review = k8s.V1SelfSubjectAccessReview(
        spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(**attrs)
        )
    )
    answer = k8s.AuthorizationV1Api(api).create_self_subject_access_review(review)
    status: k8s.V1SubjectAccessReviewStatus = answer.status
    return status


def test_self_subject_access_review_with_the_python_client(
    sandbox: ServedSandbox, admin: httpx.Client, namespace: str
) -> None:
    _grant_pod_reading(admin, namespace, "ivy")
    with _client(sandbox, _token(admin, user="ivy")) as api:
        allowed = _ssar(api, namespace=namespace, verb="get", resource="pods")
        assert allowed.allowed is True
        assert allowed.reason == (
            f'RBAC: allowed by RoleBinding "ivy-reads-pods/{namespace}" of Role "pod-reader" '
            'to User "ivy"'
        )
        assert _ssar(
            api, namespace=namespace, verb="get", resource="pods", subresource="log"
        ).allowed
        denied = _ssar(api, namespace=namespace, verb="delete", resource="pods", name="p")
        assert denied.allowed is False and not denied.reason
        assert not _ssar(api, verb="patch", resource="namespaces", name=namespace).allowed
    # With RBAC off everything is allowed, for everyone.
    admin.put("/sandbox/rbac", json={"enforced": False})
    with _client(sandbox, _token(admin, user="ivy")) as api:
        assert _ssar(api, verb="delete", resource="namespaces", name="kube-system").allowed


def test_subject_access_reviews_are_for_admins(
    sandbox: ServedSandbox, admin: httpx.Client, namespace: str
) -> None:
    _grant_pod_reading(admin, namespace, "jack")
    attrs = k8s.V1ResourceAttributes(namespace=namespace, verb="get", resource="pods")
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(user="jack", resource_attributes=attrs)
    )
    with k8s.ApiClient(k8s.Configuration(host=sandbox.url)) as api:  # system:admin
        status = k8s.AuthorizationV1Api(api).create_subject_access_review(review).status
        assert status.allowed is True
    local = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "spec": {
            "user": "jack",
            "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "pods"},
        },
    }
    resp = admin.post(
        f"/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
        json=local,
    )
    assert resp.status_code == 201 and resp.json()["status"] == {"allowed": False}
    with _client(sandbox, _token(admin, user="jack")) as api:
        with pytest.raises(k8s.ApiException) as raised:
            k8s.AuthorizationV1Api(api).create_subject_access_review(review)
        assert raised.value.status == 403
    bad = admin.post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        json={"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
    )
    assert bad.status_code == 422
    assert bad.json()["message"] == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
        "at least one of user or group must be specified"
    )


def test_reviews_are_discoverable_and_not_writes(admin: httpx.Client) -> None:
    doc = admin.get("/apis/authorization.k8s.io/v1").json()
    verbs = {r["name"]: r["verbs"] for r in doc["resources"]}
    assert verbs["selfsubjectaccessreviews"] == ["create"]
    assert verbs["subjectaccessreviews"] == ["create"]
    assert verbs["localsubjectaccessreviews"] == ["create"]
    groups = [g["name"] for g in admin.get("/apis").json()["groups"]]
    assert "authorization.k8s.io" in groups
    admin.post("/sandbox/stats/reset")
    review = {"spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}}
    resp = admin.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert resp.status_code == 201 and resp.json()["status"]["allowed"] is True
    stats = admin.get("/sandbox/stats").json()
    assert stats["total"] == 1 and stats["writes"] == 0
    assert admin.get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews").status_code == 405


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@kubectl
def test_kubectl_auth_can_i_with_a_token_kubeconfig(
    sandbox: ServedSandbox, admin: httpx.Client, namespace: str, tmp_path: Path
) -> None:
    if not sandbox.https_url:
        pytest.skip("no openssl: kubectl sends tokens only over HTTPS")
    sa = f"worker-{uuid.uuid4().hex[:6]}"
    assert (
        admin.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts", json={"metadata": {"name": sa}}
        ).status_code
        == 201
    )
    token = _token(admin, serviceAccount={"namespace": namespace, "name": sa})
    kubeconfig = sandbox.write_kubeconfig_for(token, tmp_path / "worker.kubeconfig")

    no = _kubectl(kubeconfig, "auth", "can-i", "patch", "namespaces", "-n", namespace)
    assert (no.returncode, no.stdout.strip()) == (1, "no"), no.stderr
    denied = _kubectl(kubeconfig, "label", "namespace", namespace, "upgraded=yes")
    assert denied.returncode == 1
    assert (
        f'namespaces "{namespace}" is forbidden: User "system:serviceaccount:{namespace}:{sa}" '
        f'cannot get resource "namespaces" in API group "" in the namespace "{namespace}"'
    ) in denied.stderr

    # The admin kubeconfig (no token) creates the Role with kubectl's protobuf bodies.
    admin_kc = write_kubeconfig(tmp_path / "admin.kubeconfig", sandbox.url)
    role = _kubectl(
        admin_kc, "create", "role", "ns-labeller", "-n", namespace,
        "--verb=get,patch", "--resource=namespaces",
    )  # fmt: skip
    assert role.returncode == 0, role.stderr
    bind = _kubectl(
        admin_kc, "create", "rolebinding", "ns-labeller", "-n", namespace,
        "--role=ns-labeller", f"--serviceaccount={namespace}:{sa}",
    )  # fmt: skip
    assert bind.returncode == 0, bind.stderr

    yes = _kubectl(kubeconfig, "auth", "can-i", "patch", "namespaces", "-n", namespace)
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes"), yes.stderr
    assert _kubectl(kubeconfig, "label", "namespace", namespace, "upgraded=yes").returncode == 0
    still_no = _kubectl(kubeconfig, "auth", "can-i", "delete", "namespaces", "-n", namespace)
    assert still_no.stdout.strip() == "no"
    listed = _kubectl(kubeconfig, "auth", "can-i", "--list", "-n", namespace)
    assert listed.returncode == 0 and "namespaces" in listed.stdout
    whoami = _kubectl(kubeconfig, "auth", "can-i", "create", "selfsubjectaccessreviews")
    assert whoami.stdout.strip() == "yes"
