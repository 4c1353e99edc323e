# mypy: disable-error-code="union-attr,index"
"""The ``labels`` fault: a GitOps self-heal that sets namespace labels back after a change,
toggled live through ``/sandbox/faults`` and seen through the official client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import ServedSandbox


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http
        http.post("/sandbox/faults/clear")


def _labels(core: k8s.CoreV1Api, name: str) -> dict[str, str]:
    return dict(core.read_namespace(name).metadata.labels or {})


def _wait_labels(core: k8s.CoreV1Api, name: str, want: dict[str, str], within: float) -> None:
    deadline = time.monotonic() + within
    while _labels(core, name) != want:
        assert time.monotonic() < deadline, f"labels stayed {_labels(core, name)}, want {want}"
        time.sleep(0.05)


def test_namespace_labels_are_reverted_after_the_delay(
    admin: httpx.Client, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    core.patch_namespace(namespace, {"metadata": {"labels": {"istio-injection": "enabled"}}})
    original = _labels(core, namespace)
    resp = admin.put(
        "/sandbox/faults",
        json={"labels": [{"namespaces": [namespace], "delay_s": 0.5, "count": 1}]},
    )
    assert resp.status_code == 200, resp.text
    changed = {k: v for k, v in original.items() if k != "istio-injection"} | {
        "istio.io/rev": "1-31-0"
    }
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"istio-injection": None, "istio.io/rev": "1-31-0"}}},
    )
    assert _labels(core, namespace) == changed  # the change itself is accepted
    _wait_labels(core, namespace, original, within=5)
    faults = admin.get("/sandbox/faults").json()
    assert faults["labels"][0]["count"] == 0
    events = core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={namespace}"
    ).items
    assert any(e.reason == "LabelsReverted" for e in events)
    # The count is spent: the next change stays.
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"istio-injection": None, "istio.io/rev": "1-31-0"}}},
    )
    time.sleep(1.0)
    assert _labels(core, namespace) == changed


def test_other_namespaces_are_not_reverted(
    admin: httpx.Client, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    admin.put("/sandbox/faults", json={"labels": [{"namespaces": ["elsewhere"], "delay_s": 0.1}]})
    core.patch_namespace(namespace, {"metadata": {"labels": {"team": "a"}}})
    time.sleep(0.5)
    assert _labels(core, namespace)["team"] == "a"
