"""The Kubernetes layer's error taxonomy, against the sandbox's real HTTP API and its faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import installer, migration
from istio_upgrade.activities.kube_client import KubeClients
from istio_upgrade.models import ClusterRef, InstallInput, NamespaceLabels
from tests.integration.upgrade_stack import sandbox_kube


@pytest.fixture
async def sandbox(sandbox_factory: Any) -> Any:
    box = await sandbox_factory("demo")
    yield box
    await asyncio.to_thread(box.stop)


def put_faults(sandbox: Any, faults: dict[str, Any]) -> None:
    httpx.put(f"{sandbox.url}/sandbox/faults", json=faults, timeout=10).raise_for_status()


def test_throttling_is_retried_after_the_servers_delay(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    put_faults(
        sandbox,
        {"api": [{"kind": "status", "code": 429, "retry_after_s": 1, "count": 2,
                  "resources": ["namespaces"], "verbs": ["get"]}]},
    )  # fmt: skip
    started = time.monotonic()
    ns = kube.get("v1", "Namespace", "frontend")
    assert ns["metadata"]["name"] == "frontend"
    assert time.monotonic() - started >= 1.5, "two Retry-After: 1 answers were honoured"


def test_conflicts_on_label_writes_are_retried(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    put_faults(
        sandbox,
        {"api": [{"kind": "conflict", "count": 3, "resources": ["namespaces"],
                  "verbs": ["patch"]}]},
    )  # fmt: skip
    migration.relabel(kube, [NamespaceLabels(namespace="cart", istio_rev="1-31-0")])
    labels = kube.get("v1", "Namespace", "cart")["metadata"]["labels"]
    assert labels["istio.io/rev"] == "1-31-0"


def test_dropped_connections_are_retried_per_request(sandbox: Any) -> None:
    """A connection closed without an answer is as transient as a 503 (the chaos suite found
    discovery failing whole attempts on one dropped list among a hundred requests)."""
    kube = sandbox_kube(sandbox)
    put_faults(
        sandbox,
        {"api": [{"kind": "drop", "count": 3, "resources": ["namespaces"], "verbs": ["list"]}]},
    )
    names = {ns["metadata"]["name"] for ns in kube.list("v1", "Namespace")}
    assert "frontend" in names
    put_faults(
        sandbox,
        {"api": [{"kind": "drop", "count": 2, "resources": ["namespaces"], "verbs": ["patch"]}]},
    )
    migration.relabel(kube, [NamespaceLabels(namespace="cart", istio_rev="1-31-0")])
    assert kube.get("v1", "Namespace", "cart")["metadata"]["labels"]["istio.io/rev"] == "1-31-0"


def test_transient_server_errors_are_retried_per_request(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    put_faults(
        sandbox,
        {"api": [{"kind": "status", "code": 503, "count": 2, "resources": ["namespaces"],
                  "verbs": ["patch"]},
                 {"kind": "status", "code": 500, "count": 1, "resources": ["namespaces"],
                  "verbs": ["get"]}]},
    )  # fmt: skip
    migration.relabel(kube, [NamespaceLabels(namespace="payments", istio_rev="1-31-0")])
    labels = kube.get("v1", "Namespace", "payments")["metadata"]["labels"]
    assert labels["istio.io/rev"] == "1-31-0"


def test_missing_namespace_is_permanent_and_says_what_to_do(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    with pytest.raises(ApplicationError) as info:
        migration.relabel(kube, [NamespaceLabels(namespace="ghost", istio_rev="1-31-0")])
    assert info.value.type == "NamespaceNotFound" and info.value.non_retryable
    assert "ghost" in info.value.message and "start the upgrade again" in info.value.message


def test_invalid_bundle_is_permanent(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    spec = InstallInput(
        cluster=ClusterRef(name="demo", context="sandbox"),
        version="1.31.0",
        revision="1-31-0",
        installer={"bundle_yaml": "---\nfoo: bar\n"},
        upgrade_id="u",
    )
    with pytest.raises(ApplicationError) as info:
        installer.install(kube, spec)
    assert info.value.type == "InvalidManifest" and info.value.non_retryable


def test_install_then_uninstall_removes_exactly_the_inventory(sandbox: Any) -> None:
    kube = sandbox_kube(sandbox)
    spec = InstallInput(
        cluster=ClusterRef(name="demo", context="sandbox"),
        version="1.31.0",
        revision="1-31-0",
        upgrade_id="istio-upgrade/demo/1-31-0",
    )
    first = installer.install(kube, spec)
    again = installer.install(kube, spec)
    assert first.applied == again.applied and len(first.applied) >= 7
    removed = installer.uninstall(kube, "1-31-0")
    assert removed.from_inventory and sorted(removed.deleted) == sorted(first.applied)
    assert kube.get_or_none("apps/v1", "Deployment", "istiod-1-30-3", "istio-system")
    again_removed = installer.uninstall(kube, "1-31-0")
    assert not again_removed.from_inventory and not again_removed.deleted


def test_unknown_context_is_permanent(sandbox: Any) -> None:
    clients = KubeClients(str(sandbox.kubeconfig))
    with pytest.raises(ApplicationError) as info:
        clients.for_cluster(ClusterRef(name="demo", context="nope"))
    assert info.value.type == "KubeconfigError" and "cluster.context" in info.value.message


def test_a_stopped_restart_drops_the_restarts_not_yet_begun(sandbox: Any) -> None:
    """Cancelled (or its worker stopping) after its first restart, the step stops there:
    restarts queued in its pool are dropped, not run after the activity has ended."""
    kube = sandbox_kube(sandbox)
    namespaces = [ns["metadata"]["name"] for ns in kube.list("v1", "Namespace")]
    httpx.post(f"{sandbox.url}/sandbox/stats/reset", timeout=10).raise_for_status()

    class Stop(Exception):
        pass

    listed = set(namespaces)

    def progress(ref: str) -> None:
        if ref not in listed:  # a restart done (not a namespace listed): stop now
            raise Stop

    with pytest.raises(Stop):
        migration.restart(kube, namespaces, "wf/batch-0", 1, progress)
    patches = sum(
        r["count"]
        for r in sandbox.stats()["requests"]
        if r["verb"] == "patch" and r["resource"] in {"deployments", "statefulsets", "daemonsets"}
    )
    assert 1 <= patches <= 2, patches  # the one reaped, at most one more already running
