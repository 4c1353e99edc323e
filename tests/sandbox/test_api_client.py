# The client models type every field Optional; a None here is a test failure anyway.
# mypy: disable-error-code="union-attr,index,operator,arg-type,misc,no-untyped-call"
"""API behaviour seen through the official ``kubernetes`` Python client.

Runs against the sandbox by default and against ``KUBECONFIG`` with ``pytest -m realcluster``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import watch

RUNS_ON_REAL_CLUSTER = True


def _cm(name: str, labels: dict[str, str] | None = None) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels or {}), data={"k": "v"}
    )


def _status(err: k8s.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == err.status
    return body


def _deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }


def test_create_get_list_and_duplicate(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    created = core.create_namespaced_config_map(namespace, _cm("one", {"app": "a"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert core.read_namespaced_config_map("one", namespace).data == {"k": "v"}
    listed = core.list_namespaced_config_map(namespace, label_selector="app=a")
    assert [c.metadata.name for c in listed.items] == ["one"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    with pytest.raises(k8s.ApiException) as dup:
        core.create_namespaced_config_map(namespace, _cm("one"))
    body = _status(dup.value)
    assert (dup.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["details"] == {"name": "one", "kind": "configmaps"}


def test_not_found_is_a_status(api: k8s.ApiClient, namespace: str) -> None:
    with pytest.raises(k8s.ApiException) as err:
        k8s.CoreV1Api(api).read_namespaced_config_map("missing", namespace)
    body = _status(err.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'configmaps "missing" not found'


def test_stale_update_conflicts(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, _cm("cm"))
    stale = core.read_namespaced_config_map("cm", namespace)
    fresh = core.read_namespaced_config_map("cm", namespace)
    fresh.data = {"k": "v2"}
    core.replace_namespaced_config_map("cm", namespace, fresh)
    stale.data = {"k": "v3"}
    with pytest.raises(k8s.ApiException) as err:
        core.replace_namespaced_config_map("cm", namespace, stale)
    assert (err.value.status, _status(err.value)["reason"]) == (409, "Conflict")
    assert core.read_namespaced_config_map("cm", namespace).data == {"k": "v2"}


@pytest.mark.parametrize(
    ("labels", "field"),
    [({"bad key": "x"}, "metadata.labels"), ({"app": "-nope-"}, "metadata.labels")],
)
def test_invalid_labels_are_422(
    api: k8s.ApiClient, namespace: str, labels: dict[str, str], field: str
) -> None:
    with pytest.raises(k8s.ApiException) as err:
        k8s.CoreV1Api(api).create_namespaced_config_map(namespace, _cm("cm", labels))
    body = _status(err.value)
    assert (err.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == field


def test_invalid_name_is_422(api: k8s.ApiClient, namespace: str) -> None:
    with pytest.raises(k8s.ApiException) as err:
        k8s.CoreV1Api(api).create_namespaced_config_map(namespace, _cm("Bad_Name"))
    body = _status(err.value)
    assert err.value.status == 422
    assert "metadata.name" in body["message"] and "RFC 1123" in body["message"]


def test_bad_selectors_are_400(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    with pytest.raises(k8s.ApiException) as err:
        core.list_namespaced_pod(namespace, label_selector="app in (a")
    assert (err.value.status, _status(err.value)["reason"]) == (400, "BadRequest")
    with pytest.raises(k8s.ApiException) as err:
        core.list_namespaced_pod(namespace, field_selector="spec.bogus=x")
    assert "field label not supported" in _status(err.value)["message"]


def test_set_based_selectors(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    for i, env in enumerate(["prod", "staging", "dev"]):
        core.create_namespaced_config_map(namespace, _cm(f"c{i}", {"env": env}))
    core.create_namespaced_config_map(namespace, _cm("none"))

    def names(selector: str) -> list[str]:
        items = core.list_namespaced_config_map(namespace, label_selector=selector).items
        return sorted(i.metadata.name for i in items)

    assert names("env in (prod,dev)") == ["c0", "c2"]
    assert names("env notin (prod)") == ["c1", "c2", "none"]
    assert names("!env") == ["none"]
    assert names("env,env!=dev") == ["c0", "c1"]
    got = core.list_namespaced_config_map(namespace, field_selector="metadata.name=c1").items
    assert [i.metadata.name for i in got] == ["c1"]


def test_paging_is_stable(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    for i in range(7):
        core.create_namespaced_config_map(namespace, _cm(f"cm-{i}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        seen += [i.metadata.name for i in page.items]
        pages += 1
        token = page.metadata._continue
        if pages == 1:
            assert page.metadata.remaining_item_count == 4
            # A change between pages neither duplicates nor skips existing objects.
            core.create_namespaced_config_map(namespace, _cm("cm-0a"))
        if not token:
            break
    assert pages == 3
    assert [s for s in seen if s != "cm-0a"] == [f"cm-{i}" for i in range(7)]


def test_watch_streams_changes_and_resumes(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, _cm("w0", {"w": "yes"}))
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version

    def writer() -> None:
        time.sleep(0.2)
        core.create_namespaced_config_map(namespace, _cm("w1", {"w": "yes"}))
        core.patch_namespaced_config_map("w0", namespace, {"data": {"k": "v2"}})
        core.create_namespaced_config_map(namespace, _cm("other", {"w": "no"}))
        core.delete_namespaced_config_map("w1", namespace)

    thread = threading.Thread(target=writer)
    thread.start()
    events: list[tuple[str, str, str]] = []
    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="w=yes",
        resource_version=rv,
        timeout_seconds=5,
    )
    for ev in stream:
        obj = ev["object"]
        events.append((ev["type"], obj.metadata.name, obj.metadata.resource_version))
        if len(events) == 3:
            w.stop()
    thread.join()
    assert [(t, n) for t, n, _ in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w0"),
        ("DELETED", "w1"),
    ]
    # Resuming from the first event's resourceVersion replays only what came after it.
    replay = [
        (ev["type"], ev["object"].metadata.name)
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            label_selector="w=yes",
            resource_version=events[0][2],
            timeout_seconds=1,
        )
    ]
    assert replay == [("MODIFIED", "w0"), ("DELETED", "w1")]


def test_watch_without_resource_version_starts_with_current_objects(
    api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, _cm("a"))
    core.create_namespaced_config_map(namespace, _cm("b"))
    events = [
        (ev["type"], ev["object"].metadata.name)
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, timeout_seconds=1
        )
    ]
    assert events[:2] == [("ADDED", "a"), ("ADDED", "b")]


def test_server_side_apply_creates_then_merges(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = _deployment("ssa")
    body["metadata"]["namespace"] = namespace
    created = apps.patch_namespaced_deployment(
        "ssa",
        namespace,
        body,
        field_manager="istio-upgrade",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert created.metadata.generation == 1
    assert any(m.manager == "istio-upgrade" for m in created.metadata.managed_fields)
    body["metadata"]["labels"]["istio.io/rev"] = "1-31-0"
    updated = apps.patch_namespaced_deployment(
        "ssa",
        namespace,
        body,
        field_manager="istio-upgrade",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert updated.metadata.labels == {"app": "ssa", "istio.io/rev": "1-31-0"}
    assert updated.metadata.uid == created.metadata.uid


def test_patch_types(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("p"))
    restart = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "t1"}}}
        }
    }
    out = apps.patch_namespaced_deployment("p", namespace, restart)  # strategic merge
    assert out.spec.template.metadata.annotations == {"kubectl.kubernetes.io/restartedAt": "t1"}
    assert out.metadata.generation == 2
    assert out.spec.template.spec.containers[0].name == "app"
    ops = [{"op": "add", "path": "/metadata/labels/istio.io~1rev", "value": "1-31-0"}]
    out = apps.patch_namespaced_deployment("p", namespace, ops)  # JSON patch
    assert out.metadata.labels["istio.io/rev"] == "1-31-0"
    out = apps.patch_namespaced_deployment(
        "p",
        namespace,
        {"metadata": {"labels": {"istio.io/rev": None}}},
        _content_type="application/merge-patch+json",
    )
    assert "istio.io/rev" not in out.metadata.labels


def test_unknown_patch_type_is_415(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, _cm("cm"))
    resp = httpx.patch(
        f"{api.configuration.host}/api/v1/namespaces/{namespace}/configmaps/cm",
        headers={"Content-Type": "application/x-nonsense"},
        content=b'{"data": {"a": "b"}}',
    )
    assert resp.status_code == 415
    assert resp.json()["reason"] == "UnsupportedMediaType"


def test_scale_and_status_subresources(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("s", replicas=1))
    scale = apps.read_namespaced_deployment_scale("s", namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=s"
    apps.patch_namespaced_deployment_scale("s", namespace, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("s", namespace).spec.replicas == 3


def test_status_is_only_written_through_its_subresource(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    svc = k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name="svc"),
        spec=k8s.V1ServiceSpec(ports=[k8s.V1ServicePort(port=80)], selector={"app": "x"}),
    )
    core.create_namespaced_service(namespace, svc)
    lb = {"status": {"loadBalancer": {"ingress": [{"ip": "10.9.8.7"}]}}}
    core.patch_namespaced_service("svc", namespace, lb)
    assert not core.read_namespaced_service("svc", namespace).status.load_balancer.ingress
    core.patch_namespaced_service_status("svc", namespace, lb)
    after = core.read_namespaced_service("svc", namespace)
    assert after.status.load_balancer.ingress[0].ip == "10.9.8.7"
    assert after.metadata.generation in (None, 1)


def test_deleting_a_namespace_deletes_its_objects(api: k8s.ApiClient, kube: Any) -> None:
    if not kube.is_sandbox:
        pytest.skip("a real namespace terminates asynchronously")
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map("doomed", _cm("x"))
    core.delete_namespace("doomed")
    with pytest.raises(k8s.ApiException) as err:
        core.read_namespaced_config_map("x", "doomed")
    assert err.value.status == 404
    with pytest.raises(k8s.ApiException) as err:
        core.create_namespaced_config_map("doomed", _cm("y"))
    assert _status(err.value)["message"] == 'namespaces "doomed" not found'
