"""Events through both APIs: core/v1 (``involvedObject``) and ``events.k8s.io/v1``
(``regarding``), one storage, each API's field selectors and validation, and what kubectl
shows of them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s

from tests.sandbox.conftest import KubeTarget, ServedSandbox

kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")


@pytest.fixture
def admin(sandbox: ServedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http


def _kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _configmap(api: k8s.ApiClient, namespace: str, name: str) -> k8s.V1ConfigMap:
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name))
    cm: k8s.V1ConfigMap = k8s.CoreV1Api(api).create_namespaced_config_map(namespace, body)
    return cm


def _core_event(namespace: str, name: str, involved: k8s.V1ObjectReference) -> k8s.CoreV1Event:
    now = datetime.now(UTC).replace(microsecond=0)
    return k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
        involved_object=involved,
        reason="Migrated",
        message="moved to revision 1-31-0",
        type="Normal",
        source=k8s.V1EventSource(component="istio-upgrade"),
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )


def _v1_event(namespace: str, name: str, regarding: k8s.V1ObjectReference) -> k8s.EventsV1Event:
    return k8s.EventsV1Event(
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
        event_time=datetime.now(UTC),
        reporting_controller="istio-upgrade.io/upgrader",
        reporting_instance="worker-0",
        action="Relabel",
        reason="Relabelled",
        note="istio.io/rev=1-31-0",
        type="Normal",
        regarding=regarding,
    )


def test_core_events_are_listed_by_involved_object(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    cm = _configmap(api, namespace, "settings")
    ref = k8s.V1ObjectReference(
        api_version="v1",
        kind="ConfigMap",
        name="settings",
        namespace=namespace,
        uid=cm.metadata.uid,
    )
    core.create_namespaced_event(namespace, _core_event(namespace, "settings.1", ref))
    _configmap(api, namespace, "other")
    other = k8s.V1ObjectReference(
        api_version="v1", kind="ConfigMap", name="other", namespace=namespace
    )
    core.create_namespaced_event(namespace, _core_event(namespace, "other.1", other))
    found = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=settings,involvedObject.kind=ConfigMap"
    )
    assert [e.metadata.name for e in found.items] == ["settings.1"]
    assert found.items[0].message == "moved to revision 1-31-0"


def test_events_v1_share_the_core_storage(api: k8s.ApiClient, namespace: str) -> None:
    events = k8s.EventsV1Api(api)
    core = k8s.CoreV1Api(api)
    cm = _configmap(api, namespace, "mesh")
    ref = k8s.V1ObjectReference(
        api_version="v1", kind="ConfigMap", name="mesh", namespace=namespace, uid=cm.metadata.uid
    )
    created = events.create_namespaced_event(namespace, _v1_event(namespace, "mesh.1", ref))
    assert created.note == "istio.io/rev=1-31-0" and created.regarding.name == "mesh"

    listed = events.list_namespaced_event(namespace, field_selector="regarding.name=mesh")
    assert [e.metadata.name for e in listed.items] == ["mesh.1"]
    # The same object through core/v1, in core/v1 names.
    seen = core.list_namespaced_event(namespace, field_selector="involvedObject.name=mesh")
    assert [e.metadata.uid for e in seen.items] == [created.metadata.uid]
    event = seen.items[0]
    assert (event.message, event.reporting_component, event.involved_object.kind) == (
        "istio.io/rev=1-31-0",
        "istio-upgrade.io/upgrader",
        "ConfigMap",
    )
    assert event.metadata.resource_version == created.metadata.resource_version
    by_controller = events.list_namespaced_event(
        namespace, field_selector="reportingController=istio-upgrade.io/upgrader"
    )
    assert [e.metadata.name for e in by_controller.items] == ["mesh.1"]
    with pytest.raises(k8s.ApiException) as raised:
        events.list_namespaced_event(namespace, field_selector="involvedObject.name=mesh")
    assert raised.value.status == 400
    assert json.loads(raised.value.body)["message"] == (
        "field label not supported: involvedObject.name"
    )
    core.delete_namespaced_event("mesh.1", namespace)
    assert events.list_namespaced_event(namespace).items == []


def test_events_v1_validation_is_strict(admin: httpx.Client, namespace: str) -> None:
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "x.1"},
        "reason": "Relabelled",
        "type": "Info",
        "regarding": {"kind": "Namespace", "name": namespace, "apiVersion": "v1"},
    }
    resp = admin.post(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", json=body)
    assert resp.status_code == 422
    message = resp.json()["message"]
    assert message.startswith('Event.events.k8s.io "x.1" is invalid: [')
    for part in ("eventTime: Required value", 'type: Invalid value: "": has invalid value: Info'):
        assert part in message


def test_an_event_about_a_namespace_lives_in_default(
    admin: httpx.Client, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    ns = core.read_namespace(namespace)
    ref = k8s.V1ObjectReference(
        api_version="v1", kind="Namespace", name=namespace, uid=ns.metadata.uid
    )
    with pytest.raises(k8s.ApiException) as raised:
        core.create_namespaced_event(namespace, _core_event(namespace, f"{namespace}.1", ref))
    assert raised.value.status == 422
    assert json.loads(raised.value.body)["message"] == (
        f'Event "{namespace}.1" is invalid: involvedObject.namespace: Invalid value: "": '
        "does not match event.namespace"
    )
    core.create_namespaced_event("default", _core_event("default", f"{namespace}.1", ref))
    found = core.list_event_for_all_namespaces(
        field_selector=f"involvedObject.kind=Namespace,involvedObject.name={namespace}"
    )
    assert [(e.metadata.namespace, e.reason) for e in found.items] == [("default", "Migrated")]
    core.delete_namespaced_event(f"{namespace}.1", "default")


@kubectl
def test_what_kubectl_shows_of_events(kube: KubeTarget, api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    cm = _configmap(api, namespace, "app")
    ref = k8s.V1ObjectReference(
        api_version="v1", kind="ConfigMap", name="app", namespace=namespace, uid=cm.metadata.uid
    )
    k8s.EventsV1Api(api).create_namespaced_event(namespace, _v1_event(namespace, "app.1", ref))
    ns = core.read_namespace(namespace)
    ns_ref = k8s.V1ObjectReference(
        api_version="v1", kind="Namespace", name=namespace, uid=ns.metadata.uid
    )
    core.create_namespaced_event("default", _core_event("default", f"{namespace}.2", ns_ref))
    try:
        described = _kubectl(kube.kubeconfig, "describe", "configmap", "app", "-n", namespace)
        assert "Relabelled" in described and "istio.io/rev=1-31-0" in described
        listed = _kubectl(kube.kubeconfig, "get", "events", "-n", namespace)
        assert "configmap/app" in listed and "Relabelled" in listed
        for_ns = _kubectl(kube.kubeconfig, "events", "-A", "--for", f"namespace/{namespace}")
        assert f"Namespace/{namespace}" in for_ns and "Migrated" in for_ns
        # kubectl describe namespace shows quotas and limit ranges, never events (kubectl
        # pkg/describe NamespaceDescriber), on a real cluster as here.
        ns_described = _kubectl(kube.kubeconfig, "describe", "namespace", namespace)
        assert "Status:       Active" in ns_described
        assert "No resource quota." in ns_described and "Migrated" not in ns_described
    finally:
        core.delete_namespaced_event(f"{namespace}.2", "default")


def test_watching_events_v1_sees_core_events(admin: httpx.Client, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/events"
    core = {
        "metadata": {"name": "w.1"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": namespace},
        "reason": "Killing",
        "message": "stopping",
        "type": "Normal",
    }
    assert admin.post(base, json=core).status_code == 201
    with admin.stream(
        "GET",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        params={"watch": "true", "timeoutSeconds": "1", "fieldSelector": "regarding.name=web-0"},
    ) as stream:
        lines = [json.loads(line) for line in stream.iter_lines() if line]
    assert [(e["type"], e["object"]["apiVersion"], e["object"]["note"]) for e in lines] == [
        ("ADDED", "events.k8s.io/v1", "stopping")
    ]
