"""The request log (``GET /sandbox/requests``): every API request, in order, with its caller
and the status it got, next to the unchanged per-verb counts of ``/sandbox/stats``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from istio_sandbox.requestlog import FIELDS, RequestLog
from tests.sandbox.conftest import ServedSandbox


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http
        http.post("/sandbox/faults/clear")


def _log(http: httpx.Client, since: int = 0) -> tuple[list[dict[str, Any]], int]:
    body = http.get("/sandbox/requests", params={"since": since}).json()
    return body["requests"], body["next"]


def _shape(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(entry[k] for k in FIELDS[1:])


def test_every_request_is_logged_in_order_with_its_answer(
    admin: httpx.Client, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    _, start = _log(admin)
    cm = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="a"), data={"k": "v"})
    core.create_namespaced_config_map(namespace, cm)
    core.read_namespaced_config_map("a", namespace)
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "w"}})
    core.list_namespaced_config_map(namespace, field_selector="metadata.name=a")
    with pytest.raises(k8s.ApiException):
        core.read_namespaced_config_map("missing", namespace)
    admin.put(
        "/sandbox/faults",
        json={"api": [{"kind": "status", "code": 503, "verbs": ["delete"], "count": 1}]},
    )
    with pytest.raises(k8s.ApiException):
        core.delete_namespaced_config_map("a", namespace)
    core.patch_namespace(namespace, {"metadata": {"labels": {"x": "1"}}})
    admin.get("/api/v1/namespaces/shop/widgets")  # a resource the server does not serve

    entries, nxt = _log(admin, start)
    assert [e["seq"] for e in entries] == list(range(start, nxt))
    assert all(list(e) == list(FIELDS) for e in entries)
    user = "system:admin"
    assert [_shape(e) for e in entries] == [
        ("create", "", "configmaps", "", namespace, "", user, 201),
        ("get", "", "configmaps", "", namespace, "a", user, 200),
        ("patch", "", "configmaps", "", namespace, "a", user, 200),
        ("list", "", "configmaps", "", namespace, "a", user, 200),
        ("get", "", "configmaps", "", namespace, "missing", user, 404),
        ("delete", "", "configmaps", "", namespace, "a", user, 503),
        # Namespaces are addressed in their own namespace, as RBAC sees them.
        ("patch", "", "namespaces", "", namespace, namespace, user, 200),
        ("list", "", "widgets", "", "shop", "", user, 404),
    ]
    # Admin endpoints and discovery are not API resource requests: nothing more was logged.
    admin.get("/sandbox/stats")
    admin.get("/apis")
    assert _log(admin, nxt) == ([], nxt)


def test_subresources_watches_and_dropped_connections(admin: httpx.Client, namespace: str) -> None:
    _, start = _log(admin)
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    admin.get(base, params={"watch": "true", "timeoutSeconds": "0"})
    admin.get(f"/api/v1/namespaces/{namespace}/status")
    admin.put("/sandbox/faults", json={"api": [{"kind": "drop", "count": 1}]})
    with pytest.raises(httpx.HTTPError):
        admin.get(base)
    entries, _ = _log(admin, start)
    assert [_shape(e) for e in entries] == [
        ("watch", "", "configmaps", "", namespace, "", "system:admin", 200),
        ("get", "", "namespaces", "status", namespace, namespace, "system:admin", 200),
        ("list", "", "configmaps", "", namespace, "", "system:admin", 0),
    ]


def test_reset_clears_counts_and_log_but_seq_keeps_growing(
    admin: httpx.Client, namespace: str
) -> None:
    admin.get(f"/api/v1/namespaces/{namespace}/configmaps")
    _, before = _log(admin)
    reset = admin.post("/sandbox/stats/reset").json()
    assert reset == {"total": 0, "writes": 0, "requests": []}
    assert _log(admin) == ([], before)
    admin.get(f"/api/v1/namespaces/{namespace}/configmaps")
    entries, nxt = _log(admin)
    assert [e["seq"] for e in entries] == [before] and nxt == before + 1
    stats = admin.get("/sandbox/stats").json()
    assert stats["requests"] == [
        {"verb": "list", "resource": "configmaps", "namespace": namespace, "count": 1}
    ]


def test_limit_pages_through_the_log(admin: httpx.Client, namespace: str) -> None:
    _, start = _log(admin)
    for _ in range(5):
        admin.get(f"/api/v1/namespaces/{namespace}/configmaps")
    first = admin.get("/sandbox/requests", params={"since": start, "limit": 2}).json()
    assert [e["seq"] for e in first["requests"]] == [start, start + 1]
    rest = admin.get("/sandbox/requests", params={"since": first["next"]}).json()
    assert [e["seq"] for e in rest["requests"]] == [start + 2, start + 3, start + 4]
    assert admin.get("/sandbox/requests", params={"since": "x"}).status_code == 400


def test_log_is_bounded_and_drops_the_oldest() -> None:
    log = RequestLog(maxlen=3)
    for i in range(5):
        log.append(
            verb="get",
            api_group="",
            resource="pods",
            subresource="",
            namespace="ns",
            name=f"p{i}",
            user="u",
            code=200,
        )
    entries, nxt = log.since(0)
    assert [(e["seq"], e["name"]) for e in entries] == [(3, "p2"), (4, "p3"), (5, "p4")]
    assert nxt == 6 and log.since(10) == ([], 6)
