"""Istio ambient's node components as their charts render them, and how the CNI enrolls pods.

Written from istio/istio ``manifests/charts/ztunnel/templates/daemonset.yaml`` (+ ``values.yaml``:
``resourceName`` ``ztunnel``, ``CA_ADDRESS``/``XDS_ADDRESS`` = ``istiod[-<revision>].
<istioNamespace>.svc:15012``, ``updateStrategy`` RollingUpdate maxSurge 1 / maxUnavailable 0),
``manifests/charts/istio-cni/templates/daemonset.yaml`` (``istio-cni-node``, ``hostNetwork``,
container ``install-cni``; ``values.yaml`` updateStrategy maxUnavailable 1 and the ambient
``enablementSelectors``), ``cni/pkg/util/enablement_selector.go`` (``Matches``: never
hostNetwork pods, never pods with a sidecar) and ``cni/pkg/util/podutil.go`` (annotation
``ambient.istio.io/redirection``: ``enabled``, or ``pending`` while ztunnel is not connected).
"""

from __future__ import annotations

from typing import Any

from istio_sandbox.api.selectors import SelectorError, match_label_selector
from istio_sandbox.istio.names import (
    ANNOTATION_STATUS,
    ISTIO_NAMESPACE,
    LABEL_DATAPLANE_MODE,
    LABEL_POD_INJECT,
    LABEL_REV,
    istiod_name,
)

Obj = dict[str, Any]

ZTUNNEL = "ztunnel"
CNI_DAEMONSET = "istio-cni-node"
CNI_CONTAINER = "install-cni"
ANNOTATION_REDIRECTION = "ambient.istio.io/redirection"
REDIRECTION_ENABLED = "enabled"
REDIRECTION_PENDING = "pending"
DATAPLANE_AMBIENT = "ambient"

ENABLEMENT_SELECTORS: list[tuple[Obj, Obj | None]] = [
    ({"matchLabels": {LABEL_DATAPLANE_MODE: DATAPLANE_AMBIENT}}, None),
    (
        {
            "matchExpressions": [
                {"key": LABEL_DATAPLANE_MODE, "operator": "NotIn", "values": ["none"]}
            ]
        },
        {"matchLabels": {LABEL_DATAPLANE_MODE: DATAPLANE_AMBIENT}},
    ),
]
"""istio-cni ``values.yaml`` ``ambient.enablementSelectors``: (podSelector, namespaceSelector)."""


def _chart_labels(name: str, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "istio",
        "app.kubernetes.io/version": version,
        "helm.sh/chart": f"{name}-{version}",
    }


def xds_address(revision: str) -> str:
    """``istiod{-<revision>}.istio-system.svc:15012`` (revision ``""`` = revisionless)."""
    return f"{istiod_name(revision or 'default')}.{ISTIO_NAMESPACE}.svc:15012"


def render_ztunnel(
    version: str,
    revision: str = "",
    *,
    hub: str = "docker.io/istio",
    namespace: str = ISTIO_NAMESPACE,
) -> list[Obj]:
    """``helm template ztunnel istio/ztunnel -n istio-system [--set revision=<rev>]``."""
    labels = _chart_labels(ZTUNNEL, version)
    address = xds_address(revision)
    pod_annotations: dict[str, str] = {LABEL_POD_INJECT: "false"}
    if revision:
        pod_annotations[LABEL_REV] = revision
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ZTUNNEL, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": ZTUNNEL, "namespace": namespace, "labels": labels},
            "spec": {
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "selector": {"matchLabels": {"app": ZTUNNEL}},
                "template": {
                    "metadata": {
                        "labels": {
                            LABEL_POD_INJECT: "false",
                            LABEL_DATAPLANE_MODE: "none",
                            "app": ZTUNNEL,
                            **labels,
                        },
                        "annotations": pod_annotations,
                    },
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "serviceAccountName": ZTUNNEL,
                        "priorityClassName": "system-node-critical",
                        "terminationGracePeriodSeconds": 30,
                        "containers": [
                            {
                                "name": "istio-proxy",
                                "image": f"{hub}/ztunnel:{version}",
                                "ports": [
                                    {
                                        "containerPort": 15020,
                                        "name": "ztunnel-stats",
                                        "protocol": "TCP",
                                    }
                                ],
                                "readinessProbe": {
                                    "httpGet": {"port": 15021, "path": "/healthz/ready"}
                                },
                                "args": ["proxy", "ztunnel"],
                                "env": [
                                    {"name": "CA_ADDRESS", "value": address},
                                    {"name": "XDS_ADDRESS", "value": address},
                                    {"name": "RUST_LOG", "value": "info"},
                                    {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
                                    {"name": "INPOD_ENABLED", "value": "true"},
                                    {
                                        "name": "NODE_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                    },
                                ],
                                "securityContext": {
                                    "privileged": False,
                                    "readOnlyRootFilesystem": True,
                                    "runAsGroup": 1337,
                                    "runAsNonRoot": False,
                                    "runAsUser": 0,
                                    "capabilities": {
                                        "add": ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"],
                                        "drop": ["ALL"],
                                    },
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def render_istio_cni(
    version: str, *, hub: str = "docker.io/istio", namespace: str = ISTIO_NAMESPACE
) -> list[Obj]:
    """``helm template istio-cni istio/cni -n istio-system --set profile=ambient``."""
    labels = {**_chart_labels("istio-cni", version), "k8s-app": CNI_DAEMONSET}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "istio-cni", "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "istio-cni-config", "namespace": namespace, "labels": labels},
            "data": {"AMBIENT_ENABLED": "true", "CURRENT_AGENT_VERSION": version},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": CNI_DAEMONSET, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": CNI_DAEMONSET}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {
                        "labels": {
                            "k8s-app": CNI_DAEMONSET,
                            LABEL_POD_INJECT: "false",
                            "app.kubernetes.io/name": "istio-cni",
                            LABEL_DATAPLANE_MODE: "none",
                        },
                        "annotations": {LABEL_POD_INJECT: "false"},
                    },
                    "spec": {
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "serviceAccountName": "istio-cni",
                        "priorityClassName": "system-node-critical",
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": CNI_CONTAINER,
                                "image": f"{hub}/install-cni:{version}",
                                "command": ["install-cni"],
                                "ports": [
                                    {"containerPort": 15014, "name": "metrics", "protocol": "TCP"}
                                ],
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}},
                                "securityContext": {
                                    "privileged": False,
                                    "runAsGroup": 0,
                                    "runAsUser": 0,
                                    "runAsNonRoot": False,
                                    "capabilities": {
                                        "add": ["NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_ADMIN"],
                                        "drop": ["ALL"],
                                    },
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def should_enroll(pod: Obj, namespace_labels: dict[str, str]) -> bool:
    """``CompiledEnablementSelectors.Matches`` with the chart's default selectors."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("hostNetwork"):
        return False
    if ANNOTATION_STATUS in (meta.get("annotations") or {}):
        return False  # ztunnel and a sidecar for one pod is not supported: opt out
    labels = dict(meta.get("labels") or {})
    for pod_selector, ns_selector in ENABLEMENT_SELECTORS:
        try:
            if match_label_selector(pod_selector, labels) and (
                ns_selector is None or match_label_selector(ns_selector, namespace_labels)
            ):
                return True
        except SelectorError:
            continue
    return False
