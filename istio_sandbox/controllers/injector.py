"""Istio's sidecar injector, as the API server's mutating admission runs it.

Kubernetes (``staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/mutating/
dispatcher.go``) calls **every** MutatingWebhookConfiguration, in name order, and every
webhook in it in order, whose rules match the request and whose ``namespaceSelector`` /
``objectSelector`` match; each one patches the object the next one sees, so with overlapping
webhooks the last one wins. A webhook with ``reinvocationPolicy: IfNeeded`` is called once
more if a later webhook changed the object.

A call goes where the API server sends it: ``clientConfig.service`` → that Service's ready
endpoints (Ready pods matching its selector) → the istiod pod serving them, whose version is
the image tag of its ``discovery`` container and whose revision is its ``istio.io/rev`` label
(the ``REVISION`` env). No endpoint: ``failurePolicy: Fail`` refuses the create with the API
server's message, ``Ignore`` skips the webhook.

What istiod does with the call follows ``pkg/kube/inject/webhook.go`` (``inject``,
``injectRequired`` in ``inject.go``): hostNetwork pods and pods in ``IgnoredNamespaces``
(``pkg/kube/inject/initializer.go``) are let through untouched; the pod label
``sidecar.istio.io/inject`` beats the legacy annotation of the same key (``"false"`` opts
out, the chart's policy is ``enabled``); an already-injected pod is stripped of what the
previous injection added (``stripPod``: the containers named in ``sidecar.istio.io/status``,
user containers re-inserted from ``proxy.istio.io/overrides``) and injected again by this
istiod, so its revision and proxy win.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from istio_sandbox.api.selectors import SelectorError, match_label_selector
from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.events import EventRecorder
from istio_sandbox.controllers.istiod import DISCOVERY_CONTAINER
from istio_sandbox.controllers.objects import (
    NAMESPACES,
    PODS,
    WEBHOOKS,
    controller_of,
    is_ready,
    is_terminating,
)
from istio_sandbox.istio.names import (
    ANNOTATION_INJECT,
    ANNOTATION_INJECT_TEMPLATES,
    ANNOTATION_REV,
    ANNOTATION_STATUS,
    DEFAULT_REVISION,
    ISTIO_NAMESPACE,
    LABEL_POD_INJECT,
    LABEL_REV,
    PROXY_CONTAINER,
    image_tag,
    istiod_name,
)
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import Obj, StoreError, clone

SERVICES = BY_KEY["/services"]
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
ANNOTATION_OVERRIDES = "proxy.istio.io/overrides"
"""Where the injector keeps a user-declared ``istio-proxy`` so re-injection can restore it."""
IGNORED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)
"""``pkg/kube/inject/initializer.go`` ``IgnoredNamespaces``: never injected."""

PodsIn = Callable[[str], Iterable[Obj]]
"""``namespace → pods`` (read-only), where Service endpoints are looked up."""


@dataclass(frozen=True)
class Route:
    """One injection webhook a pod matches and the istiod it would reach."""

    revision: str
    """The serving istiod's revision (``default`` for a revisionless istiod), or, when no
    endpoint serves the webhook, the configuration's ``istio.io/rev`` label."""
    configuration: str
    webhook: str
    service: str
    service_namespace: str
    path: str
    failure_policy: str = "Fail"
    reinvoke: bool = False
    version: str | None = None
    """The serving istiod's version; None when nothing serves the webhook."""
    error: str = ""
    """Why the call fails (``no endpoints available for service ...``), empty when served."""

    @property
    def discovery_address(self) -> str:
        return f"{istiod_name(self.revision)}.{ISTIO_NAMESPACE}.svc:15012"


def _targets_pod_create(webhook: Obj) -> bool:
    for rule in webhook.get("rules") or []:
        ops = rule.get("operations") or []
        resources = rule.get("resources") or []
        groups = rule.get("apiGroups") or []
        versions = rule.get("apiVersions") or []
        if (
            ("CREATE" in ops or "*" in ops)
            and ("pods" in resources or "*" in resources or "*/*" in resources)
            and ("" in groups or "*" in groups)
            and ("v1" in versions or "*" in versions)
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


def _store_pods(cluster: Cluster) -> PodsIn:
    return lambda ns: cluster.store.list(PODS, ns, copy_objects=False)


def ready_endpoints(cluster: Cluster, service: Obj, pods_in: PodsIn) -> list[Obj]:
    """What the endpoints controller publishes as ready for ``service``: Ready, not
    terminating pods of its namespace matching its ``spec.selector``, by name."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []  # a selector-less Service's endpoints are managed by hand; none here
    ns = service["metadata"].get("namespace", "")
    out = [
        p
        for p in pods_in(ns)
        if is_ready(p)
        and not is_terminating(p)
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    return sorted(out, key=lambda p: str(p["metadata"].get("name", "")))


def istiod_identity(pod: Obj) -> tuple[str, str] | None:
    """``(revision, version)`` of an istiod pod: its ``istio.io/rev`` label (else its
    ``REVISION`` env) and the image tag of its ``discovery`` container; None for other pods."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") != DISCOVERY_CONTAINER:
            continue
        version = image_tag(str(c.get("image", "")))
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        revision = (pod["metadata"].get("labels") or {}).get(LABEL_REV) or env.get("REVISION")
        if version:
            return str(revision or DEFAULT_REVISION), version
    return None


def _resolve(cluster: Cluster, cfg: Obj, wh: Obj, pods_in: PodsIn) -> Route:
    cfg_labels = cfg["metadata"].get("labels") or {}
    label_rev = str(cfg_labels.get(LABEL_REV) or DEFAULT_REVISION)
    client = wh.get("clientConfig") or {}
    service = client.get("service") or {}
    name = str(service.get("name") or "")
    ns = str(service.get("namespace") or "")
    route = Route(
        revision=label_rev,
        configuration=str(cfg["metadata"]["name"]),
        webhook=str(wh.get("name", "")),
        service=name,
        service_namespace=ns,
        path=str(service.get("path") or ""),
        failure_policy=str(wh.get("failurePolicy") or "Fail"),
        reinvoke=wh.get("reinvocationPolicy") == "IfNeeded",
    )
    if not service:
        # A url webhook lives outside the cluster; nothing in the sandbox answers it.
        url = str(client.get("url") or "")
        return Route(**{**route.__dict__, "path": url, "error": "connect: connection refused"})
    svc = cluster.store.try_get(SERVICES, ns, name)
    if svc is None:
        return Route(**{**route.__dict__, "error": f'service "{name}" not found'})
    for pod in ready_endpoints(cluster, svc, pods_in):
        ident = istiod_identity(pod)
        if ident is not None:
            return Route(**{**route.__dict__, "revision": ident[0], "version": ident[1]})
    return Route(**{**route.__dict__, "error": f'no endpoints available for service "{name}"'})


def _pod_webhooks(cluster: Cluster) -> list[tuple[Obj, Obj]]:
    """Every (configuration, webhook) targeting pod CREATE, configurations in name order."""
    return [
        (cfg, wh)
        for cfg in cluster.store.list(WEBHOOKS, copy_objects=False)
        for wh in cfg.get("webhooks") or []
        if _targets_pod_create(wh)
    ]


def _matches(wh: Obj, ns_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return _selected(wh.get("namespaceSelector"), ns_labels) and _selected(
        wh.get("objectSelector"), pod_labels
    )


def routes(
    cluster: Cluster, namespace: str, pod_labels: dict[str, str], pods_in: PodsIn | None = None
) -> list[Route]:
    """Every webhook a pod with ``pod_labels`` in ``namespace`` is sent to, in call order."""
    ns_labels = namespace_labels(cluster, namespace)
    finder = pods_in or _store_pods(cluster)
    return [
        _resolve(cluster, cfg, wh, finder)
        for cfg, wh in _pod_webhooks(cluster)
        if _matches(wh, ns_labels, pod_labels)
    ]


def route(
    cluster: Cluster, namespace: str, pod_labels: dict[str, str], pods_in: PodsIn | None = None
) -> Route | None:
    """The webhook whose injection a new pod ends up with: the last matching one that is
    served (or the last one at all when none is); None when no webhook matches."""
    found = routes(cluster, namespace, pod_labels, pods_in)
    served = [r for r in found if not r.error] or found
    return served[-1] if served else None


def webhook_unavailable(r: Route) -> StoreError:
    """The error the API server returns when a ``failurePolicy: Fail`` webhook cannot be called."""
    target = (
        f"https://{r.service}.{r.service_namespace}.svc:443{r.path}?timeout=10s"
        if r.service
        else f"{r.path}?timeout=10s"
    )
    return StoreError(
        f'Internal error occurred: failed calling webhook "{r.webhook}": failed to call webhook: '
        f'Post "{target}": {r.error}'
    )


def injection_required(pod: Obj) -> bool:
    """``injectRequired`` (pkg/kube/inject/inject.go) with the chart's ``policy: enabled``."""
    m = pod.get("metadata") or {}
    if (pod.get("spec") or {}).get("hostNetwork"):
        return False
    if m.get("namespace") in IGNORED_NAMESPACES:
        return False
    value = (m.get("annotations") or {}).get(ANNOTATION_INJECT, "")
    labels = m.get("labels") or {}
    if LABEL_POD_INJECT in labels:
        # "The label is the new API; if both are present we prefer the label"
        value = labels[LABEL_POD_INJECT]
    return bool(value != "false")


class SidecarInjector:
    """Admission function for pods: ``store.add_admission("/pods", injector.admit)``."""

    def __init__(
        self,
        cluster: Cluster,
        events: EventRecorder,
        pods_in: PodsIn | None = None,
    ) -> None:
        """Args:
        cluster: The cluster whose store this admits pods into.
        events: Where the overlapping-webhooks Warning goes.
        pods_in: ``namespace → pods`` without copying (a cache), for Service endpoints;
            defaults to reading the store.
        """
        self._cluster = cluster
        self._events = events
        self._pods_in = pods_in or _store_pods(cluster)

    def admit(self, pod: Obj) -> Obj:
        m = pod.setdefault("metadata", {})
        ns = str(m.get("namespace", ""))
        ns_labels = namespace_labels(self._cluster, ns)
        hooks = _pod_webhooks(self._cluster)
        reinvocable: list[int] = []
        reinvoke: set[int] = set()
        injected_by: list[Route] = []
        for i, (cfg, wh) in enumerate(hooks):
            if not _matches(wh, ns_labels, dict(m.get("labels") or {})):
                continue
            r, changed = self._call(cfg, wh, pod)
            if changed:
                # dispatcher.go: a change makes every earlier IfNeeded webhook due again.
                reinvoke.update(reinvocable)
                reinvocable.clear()
            if r is not None and r.reinvoke:
                reinvocable.append(i)
            if r is not None and changed:
                injected_by.append(r)
            m = pod["metadata"]
        for i in sorted(reinvoke):
            cfg, wh = hooks[i]
            if _matches(wh, ns_labels, dict(pod["metadata"].get("labels") or {})):
                r, changed = self._call(cfg, wh, pod)
                if r is not None and changed:
                    injected_by.append(r)
        configs = list(dict.fromkeys(r.configuration for r in injected_by))
        if len(configs) > 1:
            last = injected_by[-1]
            self._events.record(
                pod,
                "OverlappingWebhooks",
                f"pod matched the injection webhooks of {len(configs)} configurations "
                f"({', '.join(configs)}); each injected it in turn, the last one wins: "
                f"{last.configuration} (revision {last.revision})",
                type_="Warning",
                component="sidecar-injector",
            )
        return pod

    def _call(self, cfg: Obj, wh: Obj, pod: Obj) -> tuple[Route | None, bool]:
        """Send ``pod`` to one webhook; patch it in place. Returns (route, changed)."""
        r = _resolve(self._cluster, cfg, wh, self._pods_in)
        if r.error:
            if r.failure_policy == "Ignore":
                return None, False
            self._cluster.injection_failures[r.revision] += 1
            raise webhook_unavailable(r)
        assert r.version is not None
        if not injection_required(pod):
            return r, False
        before = clone(pod)
        reinject(pod, r, r.version)
        self._cluster.injection_successes[r.revision] += 1
        return r, pod != before


def _workload_name(pod: Obj) -> str:
    m = pod["metadata"]
    ref = controller_of(pod)
    if ref is None:
        return str(m.get("name") or m.get("generateName", "").rstrip("-"))
    name = str(ref.get("name", ""))
    labels = m.get("labels") or {}
    # Deployments label pods pod-template-hash; Argo Rollouts rollouts-pod-template-hash.
    hash_ = labels.get("pod-template-hash") or labels.get("rollouts-pod-template-hash")
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


def strip(pod: Obj) -> None:
    """``stripPod`` + ``reinsertOverrides`` (pkg/kube/inject/inject.go, webhook.go): undo a
    previous injection so the next one starts from the pod as its owner wrote it."""
    m = pod["metadata"]
    annotations = m.get("annotations") or {}
    raw = annotations.pop(ANNOTATION_STATUS, None)
    if raw is None:
        return
    try:
        status = json.loads(raw)
    except ValueError:
        return
    spec = pod.setdefault("spec", {})
    injected = set(status.get("containers") or [])
    injected_init = set(status.get("initContainers") or [])
    spec["containers"] = [c for c in spec.get("containers") or [] if c.get("name") not in injected]
    if spec.get("initContainers") is not None:
        spec["initContainers"] = [
            c for c in spec["initContainers"] if c.get("name") not in injected_init
        ]
        if not spec["initContainers"]:
            del spec["initContainers"]
    try:
        overrides = json.loads(annotations.get(ANNOTATION_OVERRIDES) or "{}")
    except ValueError:
        overrides = {}
    have = {c.get("name") for c in spec["containers"]}
    spec["containers"].extend(
        c for c in overrides.get("containers") or [] if c.get("name") not in have
    )
    if annotations.get("prometheus.io/port") == "15020":
        for key in ("prometheus.io/path", "prometheus.io/port", "prometheus.io/scrape"):
            annotations.pop(key, None)


def reinject(pod: Obj, r: Route, version: str) -> None:
    """What one istiod's ``/inject`` does to a pod, injected before or not."""
    strip(pod)
    inject(pod, r, version)


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
        # Gateways declare istio-proxy with image "auto"; injection fills it in, keeping the
        # declared container so a re-injection can start from it (reapplyOverwrittenContainers).
        annotations[ANNOTATION_OVERRIDES] = json.dumps(
            {"containers": [clone(existing)]}, separators=(",", ":")
        )
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
