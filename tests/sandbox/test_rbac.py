"""RBAC as kube-apiserver enforces it: rules, bindings, 403 Status bodies, aggregation and
escalation prevention, on the session sandbox with enforcement switched on for each test."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import ServedSandbox

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        assert http.put("/sandbox/rbac", json={"enforced": True}).json() == {"enforced": True}
        try:
            yield http
        finally:
            http.put("/sandbox/rbac", json={"enforced": False})


@pytest.fixture
def login(sandbox: ServedSandbox, admin: httpx.Client) -> Iterator[Callable[..., httpx.Client]]:
    """``login(user="alice", groups=[...])`` or ``login(serviceAccount={...})``: a client
    authenticated with a fresh token."""
    clients: list[httpx.Client] = []

    def make(**body: Any) -> httpx.Client:
        token = admin.post("/sandbox/tokens", json=body).json()["token"]
        http = httpx.Client(
            base_url=sandbox.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(http)
        return http

    yield make
    for http in clients:
        http.close()


def _create(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    resp = http.post(path, json=body)
    assert resp.status_code == 201, resp.text


def _role(admin: httpx.Client, namespace: str, name: str, rules: list[dict[str, Any]]) -> None:
    _create(
        admin, f"{RBAC}/namespaces/{namespace}/roles", {"metadata": {"name": name}, "rules": rules}
    )


def _bind(
    admin: httpx.Client,
    namespace: str | None,
    name: str,
    role: tuple[str, str],
    subjects: list[dict[str, Any]],
) -> None:
    body = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }
    if namespace is None:
        _create(admin, f"{RBAC}/clusterrolebindings", body)
    else:
        _create(admin, f"{RBAC}/namespaces/{namespace}/rolebindings", body)


def _user(name: str) -> dict[str, Any]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def _forbidden(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    body: dict[str, Any] = resp.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "Forbidden",
        403,
    )
    return body


@pytest.fixture
def other_namespace(sandbox: ServedSandbox) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        yield name
        http.delete(f"/api/v1/namespaces/{name}")


def test_a_role_allows_what_it_lists_and_nothing_else(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    _role(
        admin,
        namespace,
        "pod-reader",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    )
    sa = {"kind": "ServiceAccount", "name": "default", "namespace": namespace}
    _bind(admin, namespace, "read-pods", ("Role", "pod-reader"), [sa])
    worker = login(serviceAccount={"namespace": namespace, "name": "default"})
    user = f"system:serviceaccount:{namespace}:default"

    assert worker.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
    body = _forbidden(worker.delete(f"/api/v1/namespaces/{namespace}/pods/web-0"))
    assert body["message"] == (
        f'pods "web-0" is forbidden: User "{user}" cannot delete resource "pods" in API group "" '
        f'in the namespace "{namespace}"'
    )
    assert body["details"] == {"name": "web-0", "kind": "pods"}
    body = _forbidden(worker.post(f"/api/v1/namespaces/{namespace}/configmaps", json={}))
    assert body["message"] == (
        f'configmaps is forbidden: User "{user}" cannot create resource "configmaps" in API '
        f'group "" in the namespace "{namespace}"'
    )
    body = _forbidden(
        worker.patch(
            f"/api/v1/namespaces/{namespace}",
            content=b"{}",
            headers={"Content-Type": "application/merge-patch+json"},
        )
    )
    assert body["message"] == (
        f'namespaces "{namespace}" is forbidden: User "{user}" cannot patch resource '
        f'"namespaces" in API group "" in the namespace "{namespace}"'
    )
    assert worker.get(f"/api/v1/namespaces/{namespace}/pods/missing").status_code == 404


def test_rolebinding_to_a_clusterrole_grants_in_its_namespace_only(
    admin: httpx.Client,
    login: Callable[..., httpx.Client],
    namespace: str,
    other_namespace: str,
) -> None:
    name = f"cm-editor-{uuid.uuid4().hex[:6]}"
    _create(
        admin,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}],
        },
    )
    _bind(admin, namespace, "alice-cm", ("ClusterRole", name), [_user("alice")])
    alice = login(user="alice")
    cm = {"metadata": {"name": "c"}}
    assert alice.post(f"/api/v1/namespaces/{namespace}/configmaps", json=cm).status_code == 201
    body = _forbidden(alice.post(f"/api/v1/namespaces/{other_namespace}/configmaps", json=cm))
    assert f'in the namespace "{other_namespace}"' in body["message"]
    body = _forbidden(alice.get("/api/v1/configmaps"))
    assert body["message"] == (
        'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group '
        '"" at the cluster scope'
    )
    admin.delete(f"{RBAC}/clusterroles/{name}")


def test_cluster_scope_groups_and_the_bootstrap_roles(
    admin: httpx.Client, login: Callable[..., httpx.Client]
) -> None:
    ops = login(user="olga", groups=["ops"])
    body = _forbidden(ops.post(f"{RBAC}/clusterroles", json={"metadata": {"name": "x"}}))
    assert body["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "olga" cannot create '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )
    assert body["details"] == {"group": "rbac.authorization.k8s.io", "kind": "clusterroles"}
    _forbidden(ops.get("/api/v1/namespaces"))
    binding = f"ops-view-{uuid.uuid4().hex[:6]}"
    _bind(admin, None, binding, ("ClusterRole", "view"), [{"kind": "Group", "name": "ops"}])
    assert ops.get("/api/v1/namespaces").status_code == 200
    # Everyone authenticated may discover the API (system:discovery).
    assert ops.get("/apis").status_code == 200 and ops.get("/version").status_code == 200
    masters = login(user="root", groups=["system:masters"])
    assert masters.delete(f"{RBAC}/clusterrolebindings/{binding}").status_code == 200


def test_resource_names_subresources_and_wildcards(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    for name in ("allowed", "other"):
        _create(admin, f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": name}})
    _role(
        admin,
        namespace,
        "narrow",
        [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["allowed"],
                "verbs": ["get", "list", "create"],
            },
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]},
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
        ],
    )
    _bind(admin, namespace, "bob-narrow", ("Role", "narrow"), [_user("bob")])
    bob = login(user="bob")
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    assert bob.get(f"{base}/allowed").status_code == 200
    _forbidden(bob.get(f"{base}/other"))
    _forbidden(bob.get(base))
    assert bob.get(base, params={"fieldSelector": "metadata.name=allowed"}).status_code == 200
    # resourceNames never match a create: its URL names nothing.
    _forbidden(bob.post(base, json={"metadata": {"name": "allowed2"}}))
    deploy = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"
    assert bob.get(f"{deploy}/scale").status_code == 404  # allowed, then not found
    body = _forbidden(bob.get(deploy))
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert bob.get(f"/api/v1/namespaces/{namespace}/status").status_code == 200
    _forbidden(bob.get(f"/api/v1/namespaces/{namespace}"))


def test_forbidden_comes_before_not_found_and_names_resolution_errors(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    carol = login(user="carol")
    body = _forbidden(carol.get(f"/apis/example.com/v1/namespaces/{namespace}/widgets"))
    assert body["message"].startswith('widgets.example.com is forbidden: User "carol"')
    _bind(admin, namespace, "carol-ghost", ("ClusterRole", "does-not-exist"), [_user("carol")])
    body = _forbidden(carol.get(f"/api/v1/namespaces/{namespace}/pods"))
    assert body["message"].endswith(
        ': RBAC: clusterrole.rbac.authorization.k8s.io "does-not-exist" not found'
    )


def test_rbac_off_allows_everyone_and_the_switch_is_live(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    dave = login(user="dave")
    _forbidden(dave.get(f"/api/v1/namespaces/{namespace}/pods"))
    assert admin.put("/sandbox/rbac", json={"enforced": False}).status_code == 200
    assert admin.get("/sandbox/rbac").json() == {"enforced": False}
    assert dave.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
    assert admin.put("/sandbox/rbac", json={"enforced": "yes"}).status_code == 400


def _wait_for(fact: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not fact():
        assert time.monotonic() < deadline, "the fact never became true"
        time.sleep(0.05)


def test_aggregated_clusterroles_follow_the_roles_they_select(admin: httpx.Client) -> None:
    name = f"widgets-view-{uuid.uuid4().hex[:6]}"
    rule = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
    labels = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
    _create(
        admin,
        f"{RBAC}/clusterroles",
        {"metadata": {"name": name, "labels": labels}, "rules": [rule]},
    )

    def rules_of(role: str) -> list[Any]:
        got: list[Any] = admin.get(f"{RBAC}/clusterroles/{role}").json()["rules"]
        return got

    # view aggregates it, edit aggregates view, admin aggregates edit.
    _wait_for(lambda: all(rule in rules_of(r) for r in ("view", "edit", "admin")))
    admin.delete(f"{RBAC}/clusterroles/{name}")
    _wait_for(lambda: rule not in rules_of("admin"))


def _held(admin: httpx.Client, namespace: str, user: str, rules: list[dict[str, Any]]) -> None:
    role = f"{user}-{uuid.uuid4().hex[:6]}"
    _role(admin, namespace, role, rules)
    _bind(admin, namespace, role, ("Role", role), [_user(user)])


def test_creating_a_role_with_rules_not_held_needs_escalate(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    roles = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]}
    _held(admin, namespace, "erin", [{**roles, "verbs": ["create", "get", "update"]}])
    erin = login(user="erin")
    base = f"{RBAC}/namespaces/{namespace}/roles"
    wanted = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
    body = _forbidden(
        erin.post(base, json={"metadata": {"name": "secret-reader"}, "rules": [wanted]})
    )
    assert body["message"] == (
        'roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "erin" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}'
    )
    assert body["details"] == {
        "name": "secret-reader",
        "group": "rbac.authorization.k8s.io",
        "kind": "roles",
    }
    # Granting what one holds is fine.
    held = {**roles, "verbs": ["get"]}
    _create(erin, base, {"metadata": {"name": "role-getter"}, "rules": [held]})
    # So is anything, with escalate on roles.
    _held(admin, namespace, "erin", [{**roles, "verbs": ["escalate"]}])
    _create(erin, base, {"metadata": {"name": "secret-reader"}, "rules": [wanted]})


def test_binding_a_role_not_held_needs_bind(
    admin: httpx.Client, login: Callable[..., httpx.Client], namespace: str
) -> None:
    bindings = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"]}
    _held(admin, namespace, "frank", [{**bindings, "verbs": ["create"]}])
    frank = login(user="frank", groups=["leads"])
    base = f"{RBAC}/namespaces/{namespace}/rolebindings"
    binding = {
        "metadata": {"name": "grace-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [_user("grace")],
    }
    body = _forbidden(frank.post(base, json=binding))
    assert body["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "grace-edit" is forbidden: user "frank" '
        '(groups=["leads" "system:authenticated"]) is attempting to grant RBAC permissions '
        "not currently held:\n{"
    )
    missing = {**binding, "roleRef": {**binding["roleRef"], "name": "nope"}}
    resp = frank.post(base, json=missing)
    assert resp.status_code == 404
    assert resp.json()["message"] == 'clusterroles.rbac.authorization.k8s.io "nope" not found'
    clusterroles = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"]}
    _held(
        admin, namespace, "frank", [{**clusterroles, "resourceNames": ["edit"], "verbs": ["bind"]}]
    )
    _create(frank, base, binding)


def test_an_aggregation_rule_needs_cluster_admin(
    admin: httpx.Client, login: Callable[..., httpx.Client]
) -> None:
    name = f"gina-{uuid.uuid4().hex[:6]}"
    rules = [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["create"],
        }
    ]
    _create(admin, f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": rules})
    _bind(admin, None, name, ("ClusterRole", name), [_user("gina")])
    gina = login(user="gina")
    body = _forbidden(
        gina.post(
            f"{RBAC}/clusterroles",
            json={
                "metadata": {"name": f"{name}-agg"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
            },
        )
    )
    assert body["message"] == (
        f'clusterroles.rbac.authorization.k8s.io "{name}-agg" is forbidden: must have '
        "cluster-admin privileges to use the aggregationRule"
    )
    for path in (f"clusterrolebindings/{name}", f"clusterroles/{name}"):
        admin.delete(f"{RBAC}/{path}")


def test_python_client_sees_the_forbidden_status(
    sandbox: ServedSandbox, admin: httpx.Client, namespace: str
) -> None:
    token = admin.post("/sandbox/tokens", json={"user": "hank"}).json()["token"]
    config = k8s.Configuration(host=sandbox.url, api_key={"authorization": f"Bearer {token}"})
    with k8s.ApiClient(config) as api, pytest.raises(k8s.ApiException) as raised:
        k8s.CoreV1Api(api).list_namespaced_secret(namespace)
    assert raised.value.status == 403
    assert json.loads(raised.value.body)["message"] == (
        f'secrets is forbidden: User "hank" cannot list resource "secrets" in API group "" in '
        f'the namespace "{namespace}"'
    )
