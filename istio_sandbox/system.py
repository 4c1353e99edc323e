"""What every real cluster has before anyone uses it.

- The API server's system namespaces (``default``, ``kube-system``, ``kube-public``,
  ``kube-node-lease``), created at start-up by its ``system namespaces`` controller
  (k8s ``pkg/controlplane/controller/systemnamespaces``).
- Registered Nodes: the kubelets of the simulated nodes the scheduler and the DaemonSet
  controller place pods on.
- CustomResourceDefinitions served as apiextensions-apiserver serves them: a created CRD
  makes every served version of its group/plural a resource (CRUD, list, watch, discovery),
  reports ``Established``; deleting it deletes every object of its kind
  (apiextensions-apiserver ``pkg/controller/finalizer/crd_finalizer.go``).
- The RBAC bootstrap policy (``cluster-admin``, ``admin``/``edit``/``view``, the roles every
  authenticated user holds), see :mod:`istio_sandbox.rbac_policy`.
- The ``default`` ServiceAccount of every namespace, created by kube-controller-manager's
  serviceaccounts controller (k8s ``pkg/controller/serviceaccount/serviceaccounts_controller.go``)
  as soon as the namespace exists.
"""

from __future__ import annotations

import contextlib

from istio_sandbox import rbac_policy
from istio_sandbox.resources import BY_KEY, custom_types_of
from istio_sandbox.store import AlreadyExists, NotFound, Obj, Store, WatchEvent, now_iso

NAMESPACES = BY_KEY["/namespaces"]
CRDS = BY_KEY["apiextensions.k8s.io/customresourcedefinitions"]
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


def _crd_status(crd: Obj) -> Obj:
    names = (crd.get("spec") or {}).get("names") or {}
    old = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
    now = now_iso()

    def cond(ctype: str, reason: str, message: str) -> Obj:
        prev = old.get(ctype) or {}
        return {
            "type": ctype,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": prev.get("lastTransitionTime") or now,
        }

    versions = [v.get("name") for v in (crd.get("spec") or {}).get("versions") or []]
    return {
        "acceptedNames": {
            k: names[k]
            for k in ("kind", "listKind", "plural", "singular", "shortNames", "categories")
            if k in names
        },
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": [
            v.get("name") for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")
        ]
        or versions[:1],
    }


def _sync_crd(store: Store, ev: WatchEvent) -> None:
    spec = ev.obj.get("spec") or {}
    group = str(spec.get("group", ""))
    plural = str((spec.get("names") or {}).get("plural", ""))
    for key in [k for k in store.custom_types if k[0] == group and k[2] == plural]:
        del store.custom_types[key]
    if ev.type == "DELETED":
        for rt in custom_types_of(ev.obj)[:1]:
            # Every object of the kind goes with its definition.
            for obj in store.list(rt, copy_objects=False)[:]:
                m = obj["metadata"]
                try:
                    store.delete(rt, m.get("namespace", ""), m["name"])
                except NotFound:
                    continue
        return
    for rt in custom_types_of(ev.obj):
        store.custom_types[(rt.group, rt.version, rt.plural)] = rt
    status = _crd_status(ev.obj)
    if ev.obj.get("status") != status:
        try:
            store.set_status(CRDS, "", ev.obj["metadata"]["name"], status)
        except NotFound:
            return


def _on_change(store: Store, ev: WatchEvent) -> None:
    if ev.rt.key == CRDS.key:
        _sync_crd(store, ev)
    elif ev.rt.key == NAMESPACES.key and ev.type == "ADDED":
        name = ev.obj["metadata"]["name"]
        with contextlib.suppress(AlreadyExists):
            store.create(SERVICEACCOUNTS, default_service_account(name))


def bootstrap(store: Store) -> None:
    """Install the serviceaccounts controller on ``store``, then create the system
    namespaces (each with its ``default`` ServiceAccount), the Nodes and the RBAC bootstrap
    policy."""
    store.add_after_write(lambda ev: _on_change(store, ev))
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            store.create(NAMESPACES, namespace_object(name))
    for i, node in enumerate(NODES):
        with contextlib.suppress(AlreadyExists):
            store.create(NODES_RT, node_object(node, i))
    rbac_policy.install(store)
