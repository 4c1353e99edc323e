"""How the worker picks cluster credentials: kubeconfig first, the service account last."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.config import incluster_config
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities.kube_client import KubeClients
from istio_upgrade.models.spec import ClusterRef

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A process in a pod: no kubeconfig anywhere, a mounted service account token."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("first-token")
    (account / "ca.crt").write_text("not really a certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    return account


def test_in_a_pod_without_kubeconfig_uses_the_service_account(pod: Path) -> None:
    clients = KubeClients()
    assert clients.in_cluster()
    kube = clients.for_cluster(ClusterRef(name="prod"))
    config = kube.api.configuration
    assert config.host == "https://10.0.0.1:443"
    assert config.get_api_key_with_prefix("BearerToken") == "bearer first-token"
    # The loader's hook re-reads the token file, so kubelet's rotation reaches this client.
    assert config.refresh_api_key_hook is not None
    clients.close()


def test_in_cluster_rejects_a_named_context(pod: Path) -> None:
    with pytest.raises(ApplicationError) as raised:
        KubeClients().for_cluster(ClusterRef(name="prod", context="other"))
    assert raised.value.non_retryable
    assert "KUBECONFIG" in str(raised.value)
    KubeClients().for_cluster(ClusterRef(name="prod", context="in-cluster")).api.close()  # type: ignore[no-untyped-call]


def test_a_configured_kubeconfig_wins_in_a_pod(pod: Path, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    clients = KubeClients(str(path))
    assert not clients.in_cluster()
    assert clients.for_cluster(ClusterRef(name="c")).api.configuration.host == "http://127.0.0.1:1"
    clients.close()


def test_default_kubeconfig_wins_in_a_pod(pod: Path, tmp_path: Path) -> None:
    default = tmp_path / "home" / ".kube" / "config"
    default.parent.mkdir(parents=True)
    default.write_text(KUBECONFIG)
    assert not KubeClients().in_cluster()


def test_a_configured_but_missing_kubeconfig_is_an_error_not_a_fallback(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    clients = KubeClients()
    assert not clients.in_cluster()
    with pytest.raises(ApplicationError) as raised:
        clients.for_cluster(ClusterRef(name="prod"))
    assert raised.value.non_retryable


def test_outside_a_pod_without_kubeconfig_is_an_error(
    pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    clients = KubeClients()
    assert not clients.in_cluster()
    with pytest.raises(ApplicationError) as raised:
        clients.for_cluster(ClusterRef(name="prod"))
    assert raised.value.non_retryable
