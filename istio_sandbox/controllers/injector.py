"""Istio's sidecar injector, as the API server's mutating admission runs it.

The revision of a new pod is decided exactly as a real cluster decides it: every
MutatingWebhookConfiguration webhook that targets pod CREATE is matched by its
``namespaceSelector`` (namespace labels) and ``objectSelector`` (pod labels); configurations
are visited in name order and the first matching webhook wins. Istio's precedence rules
(``istio-injection`` beats ``istio.io/rev``, namespace beats pod, ``inject=false`` opts out)
are encoded in those selectors, so nothing here special-cases them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from istio_sandbox.api.selectors import SelectorError, match_label_selector
from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.events import EventRecorder
from istio_sandbox.controllers.istiod import deployment_ready, deployment_version
from istio_sandbox.controllers.objects import (
    DEPLOYMENTS,
    NAMESPACES,
    WEBHOOKS,
    controller_of,
)
from istio_sandbox.istio.names import (
    ANNOTATION_INJECT_TEMPLATES,
    ANNOTATION_REV,
    ANNOTATION_STATUS,
    DEFAULT_REVISION,
    ISTIO_NAMESPACE,
    LABEL_REV,
    PROXY_CONTAINER,
    istiod_name,
)
from istio_sandbox.store import Obj, StoreError

INIT_CONTAINER = "istio-init"
HUB = "docker.io/istio"
VOLUMES = [
    "workload-socket",
    "credential-socket",
    "workload-certs",
    "istio-envoy",
    "istio-data",
    "istio-podinfo",
    "istio-token",
    "istiod-ca-cert",
]
GATEWAY_TEMPLATE = "gateway"


@dataclass(frozen=True)
class Route:
    """Which webhook a pod matched and where that webhook sends it."""

    revision: str
    """The real revision (a tag's configuration carries its target in ``istio.io/rev``)."""
    configuration: str
    webhook: str
    service: str
    service_namespace: str
    path: str
    overlapping: tuple[str, ...] = ()
    """Other configurations that matched too (a misconfiguration worth a Warning)."""

    @property
    def discovery_address(self) -> str:
        return f"{istiod_name(self.revision)}.{ISTIO_NAMESPACE}.svc:15012"


def _targets_pod_create(webhook: Obj) -> bool:
    for rule in webhook.get("rules") or []:
        ops = rule.get("operations") or []
        resources = rule.get("resources") or []
        groups = rule.get("apiGroups") or []
        if (
            ("CREATE" in ops or "*" in ops)
            and ("pods" in resources or "*" in resources)
            and ("" in groups or "*" in groups)
        ):
            return True
    return False


def _selected(selector: Obj | None, labels: dict[str, str]) -> bool:
    try:
        return match_label_selector(selector, labels)
    except SelectorError:
        # The API server rejects malformed selectors on write; one that slipped in matches nothing.
        return False


def namespace_labels(cluster: Cluster, namespace: str) -> dict[str, str]:
    ns = cluster.store.try_get(NAMESPACES, "", namespace)
    labels = dict(((ns or {}).get("metadata") or {}).get("labels") or {})
    # Set by the API server on every namespace since Kubernetes 1.21.
    labels.setdefault("kubernetes.io/metadata.name", namespace)
    return labels


def route(cluster: Cluster, namespace: str, pod_labels: dict[str, str]) -> Route | None:
    """The injection webhook a pod with ``pod_labels`` in ``namespace`` would be sent to."""
    ns_labels = namespace_labels(cluster, namespace)
    first: Route | None = None
    others: list[str] = []
    for cfg in cluster.store.list(WEBHOOKS, copy_objects=False):
        cfg_name = cfg["metadata"]["name"]
        for wh in cfg.get("webhooks") or []:
            if not _targets_pod_create(wh):
                continue
            if not _selected(wh.get("namespaceSelector"), ns_labels):
                continue
            if not _selected(wh.get("objectSelector"), pod_labels):
                continue
            if first is None:
                rev = ((cfg["metadata"].get("labels") or {}).get(LABEL_REV)) or DEFAULT_REVISION
                service = (wh.get("clientConfig") or {}).get("service") or {}
                first = Route(
                    revision=rev,
                    configuration=cfg_name,
                    webhook=str(wh.get("name", "")),
                    service=str(service.get("name") or istiod_name(rev)),
                    service_namespace=str(service.get("namespace") or ISTIO_NAMESPACE),
                    path=str(service.get("path") or "/inject"),
                )
            else:
                others.append(cfg_name)
            break
    if first is not None and others:
        return Route(**{**first.__dict__, "overlapping": tuple(others)})
    return first


def webhook_unavailable(r: Route) -> StoreError:
    """The error the API server returns when a ``failurePolicy: Fail`` webhook has no endpoints."""
    return StoreError(
        f'Internal error occurred: failed calling webhook "{r.webhook}": failed to call webhook: '
        f'Post "https://{r.service}.{r.service_namespace}.svc:443{r.path}?timeout=10s": '
        f'no endpoints available for service "{r.service}"'
    )


class SidecarInjector:
    """Admission function for pods: ``store.add_admission("/pods", injector.admit)``."""

    def __init__(
        self,
        cluster: Cluster,
        events: EventRecorder,
        find_deployment: Callable[[str, str], Obj | None] | None = None,
    ) -> None:
        """Args:
        cluster: The cluster whose store this admits pods into.
        events: Where the overlapping-webhooks Warning goes.
        find_deployment: ``(namespace, name) → Deployment`` without copying (a cache);
            defaults to reading the store.
        """
        self._cluster = cluster
        self._events = events
        self._find = find_deployment or (
            lambda ns, name: cluster.store.try_get(DEPLOYMENTS, ns, name)
        )

    def admit(self, pod: Obj) -> Obj:
        m = pod.setdefault("metadata", {})
        annotations = m.get("annotations") or {}
        spec = pod.get("spec") or {}
        if ANNOTATION_STATUS in annotations or spec.get("hostNetwork"):
            return pod
        r = route(self._cluster, str(m.get("namespace", "")), dict(m.get("labels") or {}))
        if r is None:
            return pod
        istiod = self._find(ISTIO_NAMESPACE, istiod_name(r.revision))
        version = deployment_version(istiod)
        if version is None or not deployment_ready(istiod):
            self._cluster.injection_failures[r.revision] += 1
            raise webhook_unavailable(r)
        if r.overlapping:
            self._events.record(
                pod,
                "OverlappingWebhooks",
                f"pod matched the injection webhooks of {len(r.overlapping) + 1} configurations "
                f"({', '.join((r.configuration, *r.overlapping))}); injected by "
                f"{r.configuration} (revision {r.revision})",
                type_="Warning",
                component="sidecar-injector",
            )
        inject(pod, r, version)
        self._cluster.injection_successes[r.revision] += 1
        return pod


def _workload_name(pod: Obj) -> str:
    m = pod["metadata"]
    ref = controller_of(pod)
    if ref is None:
        return str(m.get("name") or m.get("generateName", "").rstrip("-"))
    name = str(ref.get("name", ""))
    hash_ = (m.get("labels") or {}).get("pod-template-hash")
    if ref.get("kind") == "ReplicaSet" and hash_ and name.endswith(f"-{hash_}"):
        return name[: -len(hash_) - 1]
    return name


def _proxy_container(image: str, r: Route, workload: str) -> Obj:
    proxy_config = json.dumps({"discoveryAddress": r.discovery_address})
    return {
        "name": PROXY_CONTAINER,
        "image": image,
        "args": [
            "proxy",
            "sidecar",
            "--domain",
            "$(POD_NAMESPACE).svc.cluster.local",
            "--proxyLogLevel=warning",
            "--proxyComponentLogLevel=misc:error",
            "--log_output_level=default:info",
        ],
        "env": [
            {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
            {"name": "CA_ADDR", "value": r.discovery_address},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "PROXY_CONFIG", "value": proxy_config},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
            {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
        ],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": 15021},
            "failureThreshold": 4,
            "periodSeconds": 15,
            "timeoutSeconds": 3,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsGroup": 1337,
            "runAsNonRoot": True,
            "runAsUser": 1337,
        },
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
            {"mountPath": "/var/run/secrets/credential-uds", "name": "credential-socket"},
            {"mountPath": "/var/run/secrets/workload-spiffe-credentials", "name": "workload-certs"},
            {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
            {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"},
        ],
    }


def _init_container(image: str) -> Obj:
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "args": [
            "istio-iptables",
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "*",
            "-x",
            "",
            "-b",
            "*",
            "-d",
            "15090,15021,15020",
            "--log_output_level=default:info",
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _volumes() -> list[Obj]:
    return [
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "credential-socket", "emptyDir": {}},
        {"name": "workload-certs", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {
            "name": "istio-podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        },
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "istio-ca",
                            "expirationSeconds": 43200,
                            "path": "istio-token",
                        }
                    }
                ]
            },
        },
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    ]


def inject(pod: Obj, r: Route, version: str) -> None:
    """Mutate ``pod`` as Istio's ``sidecar`` (or ``gateway``) injection template does."""
    m = pod["metadata"]
    spec = pod.setdefault("spec", {})
    labels = m.setdefault("labels", {})
    annotations = m.setdefault("annotations", {})
    image = f"{HUB}/proxyv2:{version}"
    workload = _workload_name(pod)
    containers: list[Obj] = spec.setdefault("containers", [])
    app_containers = [c.get("name") for c in containers if c.get("name") != PROXY_CONTAINER]
    gateway = annotations.get(ANNOTATION_INJECT_TEMPLATES) == GATEWAY_TEMPLATE
    proxy = _proxy_container(image, r, workload)
    existing = next((c for c in containers if c.get("name") == PROXY_CONTAINER), None)
    if existing is not None:
        # Gateways declare istio-proxy with image "auto"; injection fills it in.
        for k, v in proxy.items():
            if k == "image" or k not in existing:
                existing[k] = v
    else:
        containers.append(proxy)
    init_names: list[str] | None = None
    if not gateway:
        spec.setdefault("initContainers", []).insert(0, _init_container(image))
        init_names = [INIT_CONTAINER]
    have = {v.get("name") for v in spec.get("volumes") or []}
    spec.setdefault("volumes", []).extend(v for v in _volumes() if v["name"] not in have)
    status: Obj = {
        "initContainers": init_names,
        "containers": [PROXY_CONTAINER],
        "volumes": VOLUMES,
        "imagePullSecrets": None,
        "revision": r.revision,
    }
    if gateway:
        status["templates"] = [GATEWAY_TEMPLATE]
    annotations[ANNOTATION_REV] = r.revision
    annotations[ANNOTATION_STATUS] = json.dumps(status, separators=(",", ":"))
    annotations.setdefault("prometheus.io/path", "/stats/prometheus")
    annotations.setdefault("prometheus.io/port", "15020")
    annotations.setdefault("prometheus.io/scrape", "true")
    if app_containers:
        annotations.setdefault("kubectl.kubernetes.io/default-container", str(app_containers[0]))
        annotations.setdefault(
            "kubectl.kubernetes.io/default-logs-container", str(app_containers[0])
        )
    labels["security.istio.io/tlsMode"] = "istio"
    labels.setdefault(
        "service.istio.io/canonical-name",
        labels.get("app.kubernetes.io/name") or labels.get("app") or workload,
    )
    labels.setdefault(
        "service.istio.io/canonical-revision",
        labels.get("app.kubernetes.io/version") or labels.get("version") or "latest",
    )
