"""What every real cluster has before anyone uses it.

- The API server's system namespaces (``default``, ``kube-system``, ``kube-public``,
  ``kube-node-lease``), created at start-up by its ``system namespaces`` controller
  (k8s ``pkg/controlplane/controller/systemnamespaces``).
- Registered Nodes: the kubelets of the simulated nodes the scheduler and the DaemonSet
  controller place pods on.
- The ``default`` ServiceAccount of every namespace, created by kube-controller-manager's
  serviceaccounts controller (k8s ``pkg/controller/serviceaccount/serviceaccounts_controller.go``)
  as soon as the namespace exists.
"""

from __future__ import annotations

import contextlib

from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import AlreadyExists, Obj, Store, WatchEvent

NAMESPACES = BY_KEY["/namespaces"]
NODES_RT = BY_KEY["/nodes"]
SERVICEACCOUNTS = BY_KEY["/serviceaccounts"]

SYSTEM_NAMESPACES: tuple[str, ...] = ("default", "kube-node-lease", "kube-public", "kube-system")
NODES: tuple[str, ...] = ("sandbox-node-1", "sandbox-node-2", "sandbox-node-3")
"""The simulated nodes; DaemonSets run one pod on each."""
HOST_IPS = {node: f"172.18.0.{i + 2}" for i, node in enumerate(NODES)}
KUBELET_VERSION = "v1.32.0"
"""Matches the API server's ``/version`` (``v1.32.0-sandbox``) minus the build suffix."""


def namespace_object(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node_object(name: str, index: int) -> Obj:
    """A Node as a kubelet registers it (``kubectl get nodes`` reads status and nodeInfo)."""
    cidr = f"10.244.{index}.0/24"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"sandbox://{name}"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": HOST_IPS[name]},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {
                "cpu": "8",
                "memory": "32Gi",
                "pods": "110",
                "ephemeral-storage": "100Gi",
            },
            "conditions": [
                _condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                _condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                _condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                _condition("Ready", "True", "KubeletReady"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": f"sandbox-{name}",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.8.0-sandbox",
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": f"sandbox-{name}",
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": f"sandbox-{name}",
            },
        },
    }


def _condition(ctype: str, status: str, reason: str) -> Obj:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": f"kubelet: {reason}",
        "lastHeartbeatTime": None,
        "lastTransitionTime": None,
    }


def default_service_account(namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    }


def _on_change(store: Store, ev: WatchEvent) -> None:
    if ev.rt.key == NAMESPACES.key and ev.type == "ADDED":
        name = ev.obj["metadata"]["name"]
        with contextlib.suppress(AlreadyExists):
            store.create(SERVICEACCOUNTS, default_service_account(name))


def bootstrap(store: Store) -> None:
    """Install the serviceaccounts controller on ``store``, then create the system
    namespaces (each with its ``default`` ServiceAccount) and the Nodes."""
    store.add_after_write(lambda ev: _on_change(store, ev))
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            store.create(NAMESPACES, namespace_object(name))
    for i, node in enumerate(NODES):
        with contextlib.suppress(AlreadyExists):
            store.create(NODES_RT, node_object(node, i))
