"""``limit``/``continue`` paging as the API server pages (k8s.io/apiserver storage/etcd3).

Every next page is served at the first page's resourceVersion: each object appears exactly
once and as it was then, whatever is written between pages. ``remainingItemCount`` is set only
without selectors. An expired token is 410 Expired with a token that goes on from now.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from istio_sandbox import store as store_module
from istio_sandbox.cluster import Cluster
from istio_sandbox.resources import BY_KEY
from tests.sandbox.conftest import ServedSandbox

NAMESPACES = 6
CONFIGMAPS = 7
TOTAL = NAMESPACES * CONFIGMAPS


@pytest.fixture
def served() -> Iterator[ServedSandbox]:
    cluster = Cluster()
    for n in range(NAMESPACES):
        ns = f"page-{n}"
        cluster.store.create(BY_KEY["/namespaces"], {"metadata": {"name": ns}})
        for c in range(CONFIGMAPS):
            cm = {
                "metadata": {
                    "name": f"cm-{c}",
                    "namespace": ns,
                    "labels": {"parity": "even" if c % 2 == 0 else "odd"},
                },
                "data": {"v": "1"},
            }
            cluster.store.create(BY_KEY["/configmaps"], cm)
    sandbox = ServedSandbox(cluster, with_controllers=False).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def http(served: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["metadata"]["namespace"], item["metadata"]["name"]


def _pages(http: httpx.Client, path: str, limit: int, **params: str) -> Iterator[dict[str, Any]]:
    token = ""
    while True:
        query = {"limit": str(limit), **params, **({"continue": token} if token else {})}
        response = http.get(path, params=query)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        yield body
        token = body["metadata"].get("continue", "")
        if not token:
            return


def test_pages_give_every_item_once_with_the_remaining_count(http: httpx.Client) -> None:
    whole = http.get("/api/v1/configmaps").json()
    assert "continue" not in whole["metadata"]
    assert "remainingItemCount" not in whole["metadata"]
    seen: list[tuple[str, str]] = []
    versions = set()
    pages = list(_pages(http, "/api/v1/configmaps", 5))
    for n, page in enumerate(pages):
        seen += [_key(i) for i in page["items"]]
        versions.add(page["metadata"]["resourceVersion"])
        if n < len(pages) - 1:
            assert len(page["items"]) == 5
            assert page["metadata"]["remainingItemCount"] == TOTAL - len(seen)
        else:
            assert "remainingItemCount" not in page["metadata"]
            assert "continue" not in page["metadata"]
    assert len(pages) == -(-TOTAL // 5)
    assert seen == [_key(i) for i in whole["items"]]  # namespace/name order, each once
    assert versions == {whole["metadata"]["resourceVersion"]}


def test_a_list_of_exactly_limit_items_has_no_continue(http: httpx.Client) -> None:
    body = http.get("/api/v1/namespaces/page-0/configmaps", params={"limit": CONFIGMAPS}).json()
    assert len(body["items"]) == CONFIGMAPS
    assert "continue" not in body["metadata"]


def test_writes_between_pages_do_not_show_until_a_new_list(http: httpx.Client) -> None:
    first = http.get("/api/v1/configmaps", params={"limit": "10"}).json()
    list_rv = first["metadata"]["resourceVersion"]
    # After the cursor: one created, one deleted, one changed; the pages still show the list's
    # state at its resourceVersion, as etcd serves them.
    created = {"metadata": {"name": "cm-new", "namespace": "page-4"}, "data": {"v": "1"}}
    assert http.post("/api/v1/namespaces/page-4/configmaps", json=created).status_code == 201
    assert http.delete("/api/v1/namespaces/page-5/configmaps/cm-3").status_code == 200
    patched = http.patch(
        "/api/v1/namespaces/page-3/configmaps/cm-0",
        json={"data": {"v": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    items = list(first["items"])
    token = first["metadata"]["continue"]
    while token:
        page = http.get("/api/v1/configmaps", params={"limit": "10", "continue": token}).json()
        assert page["metadata"]["resourceVersion"] == list_rv
        items += page["items"]
        token = page["metadata"].get("continue", "")
    keys = [_key(i) for i in items]
    assert len(keys) == len(set(keys)) == TOTAL
    assert ("page-4", "cm-new") not in keys
    assert ("page-5", "cm-3") in keys
    old = next(i for i in items if _key(i) == ("page-3", "cm-0"))
    assert old["data"] == {"v": "1"}

    fresh = http.get("/api/v1/configmaps").json()
    assert int(fresh["metadata"]["resourceVersion"]) > int(list_rv)
    fresh_keys = {_key(i) for i in fresh["items"]}
    assert ("page-4", "cm-new") in fresh_keys
    assert ("page-5", "cm-3") not in fresh_keys


def test_selected_pages_match_once_without_a_remaining_count(http: httpx.Client) -> None:
    seen: list[tuple[str, str]] = []
    for page in _pages(http, "/api/v1/configmaps", 4, labelSelector="parity=even"):
        assert "remainingItemCount" not in page["metadata"]
        assert all(i["metadata"]["labels"]["parity"] == "even" for i in page["items"])
        seen += [_key(i) for i in page["items"]]
    evens = NAMESPACES * len(range(0, CONFIGMAPS, 2))
    assert len(seen) == len(set(seen)) == evens
    by_name = list(_pages(http, "/api/v1/configmaps", 3, fieldSelector="metadata.namespace=page-2"))
    assert [len(p["items"]) for p in by_name] == [3, 3, 1]


def test_a_namespaced_list_pages_within_its_namespace(http: httpx.Client) -> None:
    pages = list(_pages(http, "/api/v1/namespaces/page-1/configmaps", 3))
    keys = [_key(i) for p in pages for i in p["items"]]
    assert keys == [("page-1", f"cm-{c}") for c in range(CONFIGMAPS)]
    assert pages[0]["metadata"]["remainingItemCount"] == CONFIGMAPS - 3


def test_an_expired_token_is_410_with_a_token_that_goes_on(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LIST_SNAPSHOT_TTL_S", 0.0)
    first = http.get("/api/v1/configmaps", params={"limit": "10"}).json()
    token = first["metadata"]["continue"]
    # Nothing written since: the state at the list's resourceVersion is the current one.
    same = http.get("/api/v1/configmaps", params={"limit": "10", "continue": token})
    assert same.status_code == 200
    assert same.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    created = {"metadata": {"name": "cm-late", "namespace": "page-5"}}
    assert http.post("/api/v1/namespaces/page-5/configmaps", json=created).status_code == 201
    expired = http.get("/api/v1/configmaps", params={"limit": "10", "continue": token})
    assert expired.status_code == 410
    status = expired.json()
    assert status["kind"] == "Status" and status["reason"] == "Expired"
    assert "too old to display a consistent list result" in status["message"]
    items = list(first["items"])
    token = status["metadata"]["continue"]
    while token:
        page = http.get("/api/v1/configmaps", params={"limit": "10", "continue": token}).json()
        items += page["items"]
        token = page["metadata"].get("continue", "")
    keys = [_key(i) for i in items]
    assert len(keys) == len(set(keys)) == TOTAL + 1  # goes on from now: the new one shows
    assert ("page-5", "cm-late") in keys


def test_bad_continue_requests_are_400(http: httpx.Client) -> None:
    first = http.get("/api/v1/configmaps", params={"limit": "10"}).json()
    token = first["metadata"]["continue"]
    with_rv = http.get(
        "/api/v1/configmaps", params={"limit": "10", "continue": token, "resourceVersion": "5"}
    )
    assert with_rv.status_code == 400
    assert "not allowed when using continue" in with_rv.json()["message"]
    assert http.get("/api/v1/configmaps", params={"continue": "%%%"}).status_code == 400
    zero = base64.urlsafe_b64encode(json.dumps({"rv": 0, "start": ["a", "b"]}).encode())
    assert http.get("/api/v1/configmaps", params={"continue": zero.decode()}).status_code == 400
    assert http.get("/api/v1/configmaps", params={"limit": "x"}).status_code == 400


def test_the_token_is_the_api_servers_shape(http: httpx.Client) -> None:
    first = http.get("/api/v1/configmaps", params={"limit": "2"}).json()
    token = first["metadata"]["continue"]
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert data["v"] == "meta.k8s.io/v1"
    assert str(data["rv"]) == first["metadata"]["resourceVersion"]
