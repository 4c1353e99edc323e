"""Gateway API as Istio serves it: the CRDs, istiod's built-in GatewayClasses and the objects
istiod's gateway deployment controller renders for a ``Gateway``.

Written from istio/istio ``pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go``
(names, labels, ownership, ``apply``), ``classinfo.go`` (classes and their templates),
``gateway_utils.go`` ``GetDefaultName``, ``pkg/revisions/tag_watcher.go`` ``IsMine`` (which
istiod owns a Gateway) and the templates ``manifests/charts/istio-control/istio-discovery/
files/kube-gateway.yaml`` and ``waypoint.yaml``; the CRDs are the Gateway API standard
channel bundle (``gateway.networking.k8s.io/bundle-version``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from istio_sandbox.istio.names import (
    DEFAULT_REVISION,
    ISTIO_NAMESPACE,
    LABEL_DATAPLANE_MODE,
    LABEL_POD_INJECT,
    LABEL_REV,
    istiod_name,
)

Obj = dict[str, Any]

GROUP = "gateway.networking.k8s.io"
BUNDLE_VERSION = "v1.2.1"
ANNOTATION_BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"
ANNOTATION_CHANNEL = "gateway.networking.k8s.io/channel"

LABEL_GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
"""``label.IoK8sNetworkingGatewayGatewayName``: the Deployment's selector and pod label (the
older ``istio.io/gateway-name`` was dropped in 1.24)."""
LABEL_GATEWAY_CLASS = "gateway.networking.k8s.io/gateway-class-name"
LABEL_MANAGED = "gateway.istio.io/managed"
LABEL_WAYPOINT_FOR = "istio.io/waypoint-for"
LABEL_USE_WAYPOINT = "istio.io/use-waypoint"
ANNOTATION_NAME_OVERRIDE = "gateway.istio.io/name-override"
ANNOTATION_SERVICE_ACCOUNT = "gateway.istio.io/service-account"
ANNOTATION_CONTROLLER_VERSION = "gateway.istio.io/controller-version"
CONTROLLER_VERSION = "5"
"""``ControllerVersion`` of 1.18+ istiods."""

CLASS_ISTIO = "istio"
CLASS_WAYPOINT = "istio-waypoint"


@dataclass(frozen=True)
class ClassInfo:
    controller: str
    template: str
    controller_label: str
    disable_name_suffix: bool
    service_type: str


CLASS_INFOS: dict[str, ClassInfo] = {
    "istio.io/gateway-controller": ClassInfo(
        "istio.io/gateway-controller", "kube-gateway", "istio.io-gateway-controller", False,
        "LoadBalancer",
    ),
    "istio.io/mesh-controller": ClassInfo(
        "istio.io/mesh-controller", "waypoint", "istio.io-mesh-controller", True, "ClusterIP"
    ),
}  # fmt: skip
"""``GetClassInfos``: controller name → how its Gateways are deployed."""
BUILTIN_CLASSES = {
    CLASS_ISTIO: "istio.io/gateway-controller",
    CLASS_WAYPOINT: "istio.io/mesh-controller",
}
"""``GetBuiltinGatewayClasses``: class name → controller, also without a GatewayClass object."""

_OMITTED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        ANNOTATION_NAME_OVERRIDE,
        ANNOTATION_SERVICE_ACCOUNT,
        ANNOTATION_CONTROLLER_VERSION,
    }
)

# kind, plural, short names, scope, versions (storage first)
_CRDS: tuple[tuple[str, str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("GatewayClass", "gatewayclasses", ("gc",), "Cluster", ("v1", "v1beta1")),
    ("Gateway", "gateways", ("gtw",), "Namespaced", ("v1", "v1beta1")),
    ("HTTPRoute", "httproutes", (), "Namespaced", ("v1", "v1beta1")),
    ("GRPCRoute", "grpcroutes", (), "Namespaced", ("v1",)),
    ("ReferenceGrant", "referencegrants", ("refgrant",), "Namespaced", ("v1beta1",)),
)


def render_gateway_api_crds(bundle_version: str = BUNDLE_VERSION) -> list[Obj]:
    """The standard-channel Gateway API CRDs (``standard-install.yaml`` of the bundle),
    schemas reduced to ``x-kubernetes-preserve-unknown-fields``."""
    out = []
    for kind, plural, short, scope, versions in _CRDS:
        names: Obj = {
            "categories": ["gateway-api"],
            "kind": kind,
            "listKind": f"{kind}List",
            "plural": plural,
            "singular": kind.lower(),
        }
        if short:
            names["shortNames"] = list(short)
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.{GROUP}",
                    "annotations": {
                        "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2997",
                        ANNOTATION_BUNDLE_VERSION: bundle_version,
                        ANNOTATION_CHANNEL: "standard",
                    },
                },
                "spec": {
                    "group": GROUP,
                    "names": names,
                    "scope": scope,
                    "versions": [
                        {
                            "name": v,
                            "served": True,
                            "storage": i == 0,
                            "subresources": {"status": {}},
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                        for i, v in enumerate(versions)
                    ],
                },
            }
        )
    return out


def render_gateway_classes() -> list[Obj]:
    """The GatewayClasses istiod creates (``gatewayclass.go``): ``istio``, ``istio-waypoint``."""
    descriptions = {
        CLASS_ISTIO: "The default Istio GatewayClass",
        CLASS_WAYPOINT: "The default Istio waypoint GatewayClass",
    }
    return [
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": controller, "description": descriptions[name]},
        }
        for name, controller in BUILTIN_CLASSES.items()
    ]


def deployment_name(gateway: Obj, info: ClassInfo) -> str:
    """``GetDefaultName`` (``<gateway>-<class>``, or the Gateway's name for waypoints) unless
    ``gateway.istio.io/name-override`` says otherwise."""
    m = gateway["metadata"]
    override = (m.get("annotations") or {}).get(ANNOTATION_NAME_OVERRIDE)
    if override:
        return str(override)
    if info.disable_name_suffix:
        return str(m["name"])
    return f"{m['name']}-{(gateway.get('spec') or {}).get('gatewayClassName', '')}"


def _ports(gateway: Obj, info: ClassInfo) -> list[Obj]:
    """``extractServicePorts``: the status port, then one per listener port."""
    if info.template == "waypoint":
        return [{"name": "mesh", "port": 15008, "protocol": "TCP", "appProtocol": "all"}]
    ports: list[Obj] = [
        {"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"}
    ]
    seen = {15021}
    for listener in (gateway.get("spec") or {}).get("listeners") or []:
        port = int(listener.get("port") or 0)
        if not port or port in seen:
            continue
        seen.add(port)
        proto = str(listener.get("protocol") or "TCP").lower()
        ports.append({"name": f"{proto}-{port}", "port": port, "protocol": "TCP"})
    return ports


def render_gateway(
    gateway: Obj, info: ClassInfo, revision: str, version: str, hub: str = "docker.io/istio"
) -> list[Obj]:
    """ServiceAccount, Deployment and Service istiod of ``revision`` (running ``version``)
    applies for ``gateway`` (``kube-gateway.yaml`` / ``waypoint.yaml``)."""
    m = gateway["metadata"]
    name, ns, uid = str(m["name"]), str(m["namespace"]), str(m.get("uid", ""))
    cls = str((gateway.get("spec") or {}).get("gatewayClassName", ""))
    dep_name = deployment_name(gateway, info)
    annotations = {
        k: v for k, v in (m.get("annotations") or {}).items() if k not in _OMITTED_ANNOTATIONS
    }
    account = str((m.get("annotations") or {}).get(ANNOTATION_SERVICE_ACCOUNT) or dep_name)
    infra = dict(m.get("labels") or {})
    gw_labels = {LABEL_GATEWAY_NAME: name, LABEL_GATEWAY_CLASS: cls}
    managed = {**gw_labels, LABEL_MANAGED: info.controller_label}
    owner = [{"apiVersion": f"{GROUP}/v1", "kind": "Gateway", "name": name, "uid": uid}]
    waypoint = info.template == "waypoint"
    pod_labels = {
        LABEL_POD_INJECT: "false",
        **({LABEL_DATAPLANE_MODE: "none"} if waypoint else {}),
        "service.istio.io/canonical-name": dep_name,
        "service.istio.io/canonical-revision": "latest",
        **infra,
        **managed,
    }
    rev = revision or DEFAULT_REVISION
    # CA_ADDR: ``istiod{-<.Values.revision>}``, i.e. the revision's own Service.
    discovery = f"{istiod_name(rev)}.{ISTIO_NAMESPACE}.svc:15012"
    proxy: Obj = {
        "name": "istio-proxy",
        "image": f"{hub}/proxyv2:{version}",
        "args": [
            "proxy",
            "waypoint" if waypoint else "router",
            "--domain",
            "$(POD_NAMESPACE).svc.cluster.local",
            "--proxyLogLevel",
            "warning",
            "--proxyComponentLogLevel",
            "misc:error",
            "--log_output_level",
            "default:info",
        ],
        "env": [
            {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
            {"name": "CA_ADDR", "value": discovery},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {
                "name": "PROXY_CONFIG",
                "value": json.dumps({"discoveryAddress": discovery}, separators=(",", ":")),
            },
            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": dep_name},
            {
                "name": "ISTIO_META_OWNER",
                "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{dep_name}",
            },
        ],
        "ports": [
            {"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
            {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
            {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
            "failureThreshold": 4,
            "periodSeconds": 15,
            "timeoutSeconds": 1,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": 1337,
            "runAsNonRoot": True,
            "runAsUser": 1337,
        },
    }
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": dep_name,
            "namespace": ns,
            "labels": {**infra, **managed},
            "ownerReferences": owner,
        },
        "spec": {
            "selector": {"matchLabels": {LABEL_GATEWAY_NAME: name}},
            "template": {
                "metadata": {
                    "annotations": {
                        **annotations,
                        LABEL_REV: rev,
                        "prometheus.io/path": "/stats/prometheus",
                        "prometheus.io/port": "15020",
                        "prometheus.io/scrape": "true",
                    },
                    "labels": pod_labels,
                },
                "spec": {
                    "serviceAccountName": account,
                    "terminationGracePeriodSeconds": 2 if waypoint else 30,
                    "containers": [proxy],
                },
            },
        },
    }
    if annotations:
        deployment["metadata"]["annotations"] = dict(annotations)
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": dep_name,
            "namespace": ns,
            "labels": {**infra, **managed},
            "ownerReferences": owner,
        },
        "spec": {
            "type": info.service_type,
            "selector": {LABEL_GATEWAY_NAME: name},
            "ports": _ports(gateway, info),
        },
    }
    sa: Obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": account,
            "namespace": ns,
            "labels": {**infra, **gw_labels},
            "ownerReferences": owner,
        },
    }
    return [sa, deployment, service]


def gateway_object(
    name: str,
    namespace: str,
    gateway_class: str,
    *,
    labels: dict[str, str] | None = None,
    port: int = 80,
) -> Obj:
    """A ``Gateway`` as a team writes it: one HTTP listener (istio) or the HBONE listener
    ``istioctl waypoint generate`` writes (waypoints)."""
    if gateway_class == CLASS_WAYPOINT:
        listeners = [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    else:
        listeners = [
            {
                "name": "http",
                "port": port,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }
        ]
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {"gatewayClassName": gateway_class, "listeners": listeners},
    }
