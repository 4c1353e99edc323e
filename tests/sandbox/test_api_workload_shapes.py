# The client models type every field Optional; a None here is a test failure anyway.
# mypy: disable-error-code="union-attr,index,operator,arg-type"
"""Workload shapes real clusters have: hostNetwork pods, OnDelete StatefulSets and DaemonSets,
paused Deployments — as the official client sees them.

Runs against the sandbox by default and against ``KUBECONFIG`` with ``pytest -m realcluster``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

RUNS_ON_REAL_CLUSTER = True
IMAGE = "registry.k8s.io/pause:3.9"


def _wait(predicate: Callable[[], Any], within: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.1)


def _template(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [{"name": "main", "image": IMAGE}],
            "terminationGracePeriodSeconds": 0,
            **spec,
        },
    }


def _restart_patch() -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}
        }
    }


def _pods(api: k8s.ApiClient, ns: str, app: str) -> list[Any]:
    pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_host_network_pod_uses_its_node_ip(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agent"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "agent"}},
            "template": _template("agent", hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
        },
    }
    apps.create_namespaced_deployment(namespace, body)
    pod = _wait(
        lambda: next((p for p in _pods(api, namespace, "agent") if _ready(p)), None),
        what="a Ready hostNetwork pod",
    )
    assert pod.spec.host_network is True
    assert pod.status.pod_ip == pod.status.host_ip


def test_ondelete_statefulset_moves_update_revision_only(
    api: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(api)
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": _template("db"),
        },
    }
    apps.create_namespaced_stateful_set(namespace, body)

    def settled() -> Any:
        s = apps.read_namespaced_stateful_set("db", namespace)
        st = s.status
        return (st.ready_replicas or 0) == 2 and st.current_revision == st.update_revision and s

    sts = _wait(settled, what="StatefulSet ready")
    first_rev = sts.status.update_revision
    before = {p.metadata.name: p.metadata.uid for p in _pods(api, namespace, "db")}
    apps.patch_namespaced_stateful_set("db", namespace, _restart_patch())

    def moved() -> Any:
        s = apps.read_namespaced_stateful_set("db", namespace)
        ok = s.status.observed_generation >= s.metadata.generation
        return ok and s.status.update_revision != first_rev and s

    sts = _wait(moved, what="a new update revision")
    time.sleep(1.0)
    sts = apps.read_namespaced_stateful_set("db", namespace)
    assert (sts.status.updated_replicas or 0) == 0
    assert sts.status.current_revision == first_rev
    assert {p.metadata.name: p.metadata.uid for p in _pods(api, namespace, "db")} == before
    # Deleting a pod replaces it at the update revision.
    k8s.CoreV1Api(api).delete_namespaced_pod("db-1", namespace, grace_period_seconds=0)

    def one_updated() -> Any:
        s = apps.read_namespaced_stateful_set("db", namespace)
        return (s.status.updated_replicas or 0) == 1 and (s.status.ready_replicas or 0) == 2 and s

    sts = _wait(one_updated, what="db-1 recreated at the update revision")
    pod = k8s.CoreV1Api(api).read_namespaced_pod("db-1", namespace)
    assert pod.metadata.labels["controller-revision-hash"] == sts.status.update_revision
    assert pod.metadata.uid != before["db-1"]


def test_ondelete_daemonset_counts_updated_pods(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": _template("agent"),
        },
    }
    apps.create_namespaced_daemon_set(namespace, body)

    def ready() -> Any:
        d = apps.read_namespaced_daemon_set("agent", namespace)
        st = d.status
        return st.desired_number_scheduled and st.number_ready == st.desired_number_scheduled and d

    ds = _wait(ready, what="DaemonSet ready")
    desired = ds.status.desired_number_scheduled
    apps.patch_namespaced_daemon_set("agent", namespace, _restart_patch())

    def observed() -> Any:
        d = apps.read_namespaced_daemon_set("agent", namespace)
        return d.status.observed_generation >= d.metadata.generation and d

    _wait(observed, what="generation observed")
    time.sleep(1.0)
    ds = apps.read_namespaced_daemon_set("agent", namespace)
    assert (ds.status.updated_number_scheduled or 0) == 0
    victim = _pods(api, namespace, "agent")[0]
    k8s.CoreV1Api(api).delete_namespaced_pod(
        victim.metadata.name, namespace, grace_period_seconds=0
    )

    def one_updated() -> Any:
        d = apps.read_namespaced_daemon_set("agent", namespace)
        return (d.status.updated_number_scheduled or 0) == 1 and d.status.number_ready == desired

    _wait(one_updated, what="one pod replaced at the new template")


def test_paused_deployment_does_not_roll_until_resumed(api: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": _template("web"),
        },
    }
    apps.create_namespaced_deployment(namespace, body)

    def available() -> Any:
        d = apps.read_namespaced_deployment("web", namespace)
        return (d.status.available_replicas or 0) == 2 and (d.status.updated_replicas or 0) == 2

    _wait(available, what="Deployment available")
    before = {p.metadata.uid for p in _pods(api, namespace, "web")}
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": True}})
    apps.patch_namespaced_deployment("web", namespace, _restart_patch())

    def paused() -> Any:
        d = apps.read_namespaced_deployment("web", namespace)
        cond = next((c for c in d.status.conditions or [] if c.type == "Progressing"), None)
        return (
            d.status.observed_generation >= d.metadata.generation
            and cond is not None
            and cond.reason == "DeploymentPaused"
            and d
        )

    dep = _wait(paused, what="Progressing=Unknown DeploymentPaused")
    cond = next(c for c in dep.status.conditions if c.type == "Progressing")
    assert cond.status == "Unknown"
    time.sleep(1.0)
    assert {p.metadata.uid for p in _pods(api, namespace, "web")} == before
    rses = apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
    assert len(rses) == 1
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": False}})

    def rolled() -> Any:
        uids = {p.metadata.uid for p in _pods(api, namespace, "web") if _ready(p)}
        return len(uids) == 2 and not uids & before

    _wait(rolled, what="pods replaced after resume")
