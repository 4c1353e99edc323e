"""Wire-level details clients depend on: discovery, Table output, watch framing, logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from istio_sandbox.api.handlers import PODS, delete_pod
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import Store
from tests.sandbox.conftest import ServedSandbox

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
def http(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


def _lines(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def test_discovery_documents(http: httpx.Client) -> None:
    assert http.get("/version").json()["minor"] == "32"
    assert http.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"] for g in http.get("/apis").json()["groups"]}
    assert {"apps", "batch", "policy", "admissionregistration.k8s.io"} <= groups
    apps = {r["name"]: r for r in http.get("/apis/apps/v1").json()["resources"]}
    assert apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["deployments/scale"]["kind"] == "Scale"
    assert "deployments/status" in apps
    core = {r["name"] for r in http.get("/api/v1").json()["resources"]}
    assert {"pods", "pods/log", "namespaces"} <= core
    aggregated = http.get(
        "/apis",
        headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    )
    # Plain APIGroupList tells kubectl to fall back to per-group discovery.
    assert aggregated.headers["Content-Type"].startswith("application/json")
    assert aggregated.json()["kind"] == "APIGroupList"
    assert http.get("/apis/nope.example.com/v1").status_code == 404


def test_openapi_v3_advertises_field_validation(http: httpx.Client) -> None:
    index = http.get("/openapi/v3").json()["paths"]
    doc = http.get(index["apis/apps/v1"]["serverRelativeURL"]).json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}


def test_table_output(http: httpx.Client, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "cm"}})
    table = http.get(f"/api/v1/namespaces/{namespace}/configmaps", headers={"Accept": TABLE}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["cm", 0]
    generic = http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts", headers={"Accept": TABLE})
    assert [c["name"] for c in generic.json()["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    ns_table = http.get(f"/api/v1/namespaces/{namespace}", headers={"Accept": TABLE}).json()
    assert ns_table["rows"][0]["cells"][:2] == [namespace, "Active"]


def test_watch_framing_bookmarks_and_table_events(http: httpx.Client, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, json={"metadata": {"name": "a"}})
    plain = _lines(
        http.get(
            base, params={"watch": "1", "timeoutSeconds": "1.5", "allowWatchBookmarks": "true"}
        )
    )
    assert plain[0]["type"] == "ADDED" and plain[0]["object"]["metadata"]["name"] == "a"
    assert "BOOKMARK" in {e["type"] for e in plain}
    bookmark = next(e for e in plain if e["type"] == "BOOKMARK")["object"]
    assert bookmark["kind"] == "ConfigMap" and int(bookmark["metadata"]["resourceVersion"]) > 0
    tables = _lines(
        http.get(base, params={"watch": "true", "timeoutSeconds": "0"}, headers={"Accept": TABLE})
    )
    assert tables[0]["object"]["kind"] == "Table"
    assert tables[0]["object"]["rows"][0]["cells"][0] == "a"
    legacy = _lines(http.get(f"/api/v1/watch/namespaces/{namespace}/configmaps?timeoutSeconds=0"))
    assert [e["object"]["metadata"]["name"] for e in legacy] == ["a"]


def test_too_old_resource_version_is_an_expired_error_event(
    http: httpx.Client, namespace: str
) -> None:
    events = _lines(
        http.get(
            f"/api/v1/namespaces/{namespace}/pods",
            params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"},
        )
    )
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")


def test_pod_log_endpoint(http: httpx.Client, namespace: str) -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "a"}, {"name": "side", "image": "b"}]},
    }
    assert http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod).status_code == 201
    deadline = time.monotonic() + 10
    while True:
        # Until the container starts the API server answers 400 "waiting to start".
        log = http.get(f"/api/v1/namespaces/{namespace}/pods/p/log", params={"container": "app"})
        if log.status_code != 400 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert log.status_code == 200 and log.headers["Content-Type"].startswith("text/plain")
    tail = http.get(
        f"/api/v1/namespaces/{namespace}/pods/p/log", params={"container": "app", "tailLines": "1"}
    )
    assert tail.status_code == 200 and len(tail.text.splitlines()) <= 1
    ambiguous = http.get(f"/api/v1/namespaces/{namespace}/pods/p/log")
    assert ambiguous.status_code == 400
    assert "choose one of: [app side]" in ambiguous.json()["message"]
    assert http.get(f"/api/v1/namespaces/{namespace}/pods/nope/log").status_code == 404


def test_errors_for_malformed_requests(http: httpx.Client, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    bad_json = http.post(base, content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "BadRequest"
    protobuf = http.post(
        base, content=b"k8s\x00", headers={"Content-Type": "application/vnd.kubernetes.protobuf"}
    )
    assert protobuf.status_code == 415
    assert http.put(base, json={}).status_code == 405
    assert http.get("/api/v1/widgets").status_code == 404
    wrong_ns = http.post(base, json={"metadata": {"name": "x", "namespace": "other"}})
    assert wrong_ns.status_code == 400
    missing_ns = http.post("/api/v1/namespaces/absent/configmaps", json={"metadata": {"name": "x"}})
    assert missing_ns.status_code == 404
    assert missing_ns.json()["message"] == 'namespaces "absent" not found'


def test_pod_deletion_is_graceful_once_scheduled(
    http: httpx.Client, sandbox: ServedSandbox, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    spec = {"containers": [{"name": "app", "image": "a"}], "nodeName": "node-1"}
    pod: dict[str, Any] = {"metadata": {"name": "s"}, "spec": spec}
    assert http.post(base, json=pod).status_code == 201
    gone = http.delete(f"{base}/s").json()
    assert gone["metadata"]["deletionTimestamp"]
    assert gone["metadata"]["deletionGracePeriodSeconds"] == 30
    assert http.get(f"{base}/s").json()["metadata"]["deletionTimestamp"]
    if sandbox._controllers is not None:
        deadline = time.monotonic() + 5
        while http.get(f"{base}/s").status_code != 404:
            assert time.monotonic() < deadline, "the pod controller never removed the pod"
            time.sleep(0.05)
    assert http.post(base, json={**pod, "metadata": {"name": "t"}}).status_code == 201
    assert http.delete(f"{base}/t", params={"gracePeriodSeconds": "0"}).status_code == 200
    assert http.get(f"{base}/t").status_code == 404


def test_unscheduled_or_finished_pods_are_deleted_at_once() -> None:
    store = Store()
    store.create(BY_KEY["/namespaces"], {"metadata": {"name": "ns"}})
    spec = {"containers": [{"name": "app", "image": "a"}]}
    store.create(PODS, {"metadata": {"name": "u", "namespace": "ns"}, "spec": spec})
    done = {"metadata": {"name": "d", "namespace": "ns"}, "spec": {**spec, "nodeName": "n"}}
    store.create(PODS, {**done, "status": {"phase": "Succeeded"}})
    for name in ("u", "d"):
        delete_pod(store, "ns", name, None)
        assert store.try_get(PODS, "ns", name) is None
