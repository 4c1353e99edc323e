"""Read the cluster's Istio state in one pass: a few paged cluster-wide lists, no per-pod GETs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from istio_upgrade.activities.kube_client import Kube, Obj
from istio_upgrade.istio.naming import (
    ANNOTATION_INJECT_TEMPLATES,
    ANNOTATION_REV,
    ANNOTATION_STATUS,
    DEFAULT_TAG,
    ISTIO_NAMESPACE,
    LABEL_POD_INJECT,
    LABEL_REV,
    LABEL_TAG,
    PROXY_CONTAINER,
    image_tag,
)
from istio_upgrade.istio.support import SUPPORT
from istio_upgrade.models.injection import effective_revision
from istio_upgrade.models.inventory import (
    RESTARTABLE_KINDS,
    ClusterInventory,
    GatewayInfo,
    NamespaceInfo,
    PodInfo,
    RevisionInfo,
    SupportData,
    WebhookInfo,
    WorkloadInfo,
)

ANNOTATION_RESTART_STAMP = "istio-upgrade.io/restart-stamp"
"""Pod-template annotation: the upgrade id and step that last restarted the workload."""
ANNOTATION_UPGRADE_ID = "istio-upgrade.io/upgrade-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "istio-upgrade"


def inventory_configmap_name(revision: str) -> str:
    """The ConfigMap recording what the ``manifests`` installer applied for a revision."""
    return f"istio-upgrade-inventory-{revision}"


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def injected_revision(pod: Obj) -> str | None:
    """The revision that injected a pod: annotation ``istio.io/rev``, else the status JSON."""
    annotations = _meta(pod).get("annotations") or {}
    rev = annotations.get(ANNOTATION_REV)
    if rev:
        return str(rev)
    status = annotations.get(ANNOTATION_STATUS)
    if status:
        try:
            value = json.loads(status).get("revision")
        except (ValueError, AttributeError):
            return None
        return str(value) if value else None
    return None


def proxy_version(pod: Obj) -> str | None:
    """Image tag of the ``istio-proxy`` container (a regular or a native sidecar container)."""
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") == PROXY_CONTAINER:
            return image_tag(container.get("image", "")) or None
    return None


def pod_info(pod: Obj) -> PodInfo:
    """The facts about one pod that discovery and verification need."""
    meta = _meta(pod)
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    annotations = meta.get("annotations") or {}
    templates = annotations.get(ANNOTATION_INJECT_TEMPLATES, "")
    # Istio's injector still honours the deprecated annotation form of the opt-out; ignoring it
    # would report such pods as stragglers "without sidecar" and roll the batch back.
    opt_out = ((meta.get("labels") or {}).get(LABEL_POD_INJECT), annotations.get(LABEL_POD_INJECT))
    return PodInfo(
        name=meta["name"],
        phase=status.get("phase") or "Pending",
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        terminating=bool(meta.get("deletionTimestamp")),
        injected_revision=injected_revision(pod),
        proxy_version=proxy_version(pod),
        opted_out="false" in opt_out,
        gateway="gateway" in [t.strip() for t in str(templates).split(",")],
    )


def pod_owner(pod: Obj, rs_owner: dict[tuple[str, str], tuple[str, str]]) -> tuple[str, str]:
    """(kind, name) of the workload a pod belongs to; ``("Pod", name)`` for a bare pod."""
    meta = _meta(pod)
    namespace = meta.get("namespace", "")
    refs = meta.get("ownerReferences") or []
    for ref in refs:
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ReplicaSet":
            return rs_owner.get((namespace, name), ("Pod", meta["name"]))
        if kind in {"StatefulSet", "DaemonSet", "Job"}:
            return kind, name
    # A controller this tool does not know (an operator's kind): its own, not restartable.
    for ref in refs:
        if ref.get("controller") and ref.get("kind"):
            return str(ref["kind"]), str(ref.get("name", ""))
    return "Pod", meta["name"]


def replicaset_owners(items: Iterable[Obj]) -> dict[tuple[str, str], tuple[str, str]]:
    """(namespace, ReplicaSet) → (kind, name) of its Deployment; orphans stand for themselves."""
    owners: dict[tuple[str, str], tuple[str, str]] = {}
    for rs in items:
        meta = _meta(rs)
        owner = ("Pod", meta["name"])
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "Deployment":
                owner = ("Deployment", ref["name"])
            elif ref.get("controller") and ref.get("kind"):
                # Argo Rollouts' Rollout and other controllers keep ReplicaSets too.
                owner = (str(ref["kind"]), str(ref.get("name", "")))
        owners[(meta.get("namespace", ""), meta["name"])] = owner
    return owners


def _webhooks(items: Iterable[Obj]) -> list[WebhookInfo]:
    hooks: list[WebhookInfo] = []
    for config in items:
        meta = _meta(config)
        labels = meta.get("labels") or {}
        if LABEL_REV not in labels and not meta["name"].startswith("istio-sidecar-injector"):
            continue
        revision = labels.get(LABEL_REV) or DEFAULT_TAG
        for hook in config.get("webhooks") or []:
            hooks.append(
                WebhookInfo(
                    configuration=meta["name"],
                    name=hook.get("name", ""),
                    revision=revision,
                    tag=labels.get(LABEL_TAG),
                    namespace_selector=hook.get("namespaceSelector") or {},
                    object_selector=hook.get("objectSelector") or {},
                )
            )
    return hooks


def _revisions(kube: Kube) -> list[RevisionInfo]:
    installed_by: dict[str, str] = {}
    for cm in kube.list(
        "v1", "ConfigMap", ISTIO_NAMESPACE, label_selector=f"{LABEL_MANAGED_BY}={MANAGER}"
    ):
        meta = _meta(cm)
        rev = (meta.get("labels") or {}).get(LABEL_REV)
        upgrade = (meta.get("annotations") or {}).get(ANNOTATION_UPGRADE_ID)
        if rev and upgrade:
            installed_by[rev] = upgrade
    revisions: list[RevisionInfo] = []
    for deploy in kube.list("apps/v1", "Deployment", ISTIO_NAMESPACE, label_selector="app=istiod"):
        meta = _meta(deploy)
        rev = (meta.get("labels") or {}).get(LABEL_REV) or DEFAULT_TAG
        containers = ((deploy.get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers"
        ) or []
        version = next((image_tag(c.get("image", "")) for c in containers), "") or None
        annotations = meta.get("annotations") or {}
        release = annotations.get("meta.helm.sh/release-name")
        release_ns = annotations.get("meta.helm.sh/release-namespace", ISTIO_NAMESPACE)
        revisions.append(
            RevisionInfo(
                helm_release=f"{release_ns}/{release}" if release else None,
                name=rev,
                version=version,
                ready=deployment_available(deploy),
                deployment=meta["name"],
                installed_by=installed_by.get(rev),
            )
        )
    return sorted(revisions, key=lambda r: r.name)


def deployment_available(deploy: Obj) -> bool:
    """Every desired replica of the current generation is updated and available."""
    meta, spec, status = _meta(deploy), deploy.get("spec") or {}, deploy.get("status") or {}
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= meta.get("generation", 0)
        and status.get("updatedReplicas", 0) >= want
        and status.get("availableReplicas", 0) >= want
    )


MAX_LISTED_ENVOY_FILTERS = 50
# The ztunnel and istio-cni charts' DaemonSets (manifests/charts/ztunnel, istio-cni).
AMBIENT_DAEMONSETS = frozenset({"ztunnel", "istio-cni-node"})


def _ambient_component(ds: Obj) -> str:
    meta = _meta(ds)
    containers = ((ds.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []
    version = next((image_tag(c.get("image", "")) for c in containers), "") or "unknown"
    return f"DaemonSet {meta.get('namespace', '')}/{meta['name']} ({version})"


def gitops_owner(meta: dict[str, Any]) -> str | None:
    """The GitOps tool whose marks a namespace carries: it may revert labels we set."""
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if "argocd.argoproj.io/tracking-id" in annotations or "argocd.argoproj.io/instance" in labels:
        return "Argo CD"
    if any(
        k.startswith(("kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")) for k in labels
    ):
        return "Flux"
    return None


_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def _kubernetes_version(kube: Kube) -> str | None:
    version = kube.request("GET", "/version")
    return str(version.get("gitVersion") or "") or None


def _gateway_api_version(kube: Kube) -> str | None:
    """The bundle version the Gateway API CRDs carry (``kubectl get crd gateways.gateway…``)."""
    crd = kube.get_or_none(*_CRD, "gateways.gateway.networking.k8s.io")
    if crd is None:
        return None
    annotations = _meta(crd).get("annotations") or {}
    return str(annotations.get("gateway.networking.k8s.io/bundle-version") or "unknown")


# istiod's GatewayClasses (pilot/pkg/config/kube/gatewaycommon/classinfo.go) and the name of
# the Deployment it renders for a Gateway (deploymentcontroller.go; name-override wins).
ISTIO_GATEWAY_CLASSES = {"istio": "-istio", "istio-waypoint": ""}
ANNOTATION_NAME_OVERRIDE = "gateway.istio.io/name-override"


def _gateways(kube: Kube) -> list[GatewayInfo]:
    """Gateway API gateways and waypoints istiod deploys, when Gateway API is installed."""
    crd = kube.get_or_none(*_CRD, "gateways.gateway.networking.k8s.io")
    if crd is None:
        return []
    found: list[GatewayInfo] = []
    for gw in kube.list("gateway.networking.k8s.io/v1", "Gateway"):
        meta = _meta(gw)
        cls = str((gw.get("spec") or {}).get("gatewayClassName", ""))
        if cls not in ISTIO_GATEWAY_CLASSES:
            continue
        override = (meta.get("annotations") or {}).get(ANNOTATION_NAME_OVERRIDE)
        found.append(
            GatewayInfo(
                namespace=meta.get("namespace", ""),
                name=meta["name"],
                gateway_class=cls,
                revision_label=(meta.get("labels") or {}).get(LABEL_REV),
                deployment=override or f"{meta['name']}{ISTIO_GATEWAY_CLASSES[cls]}",
            )
        )
    return sorted(found, key=lambda g: (g.namespace, g.name))


def _envoy_filters(kube: Kube) -> list[str]:
    """EnvoyFilters bind to a proxy's internals; an upgrade names them as a risk."""
    crd = kube.get_or_none(*_CRD, "envoyfilters.networking.istio.io")
    if crd is None:
        return []
    served = [
        v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served", True)
    ]
    version = "v1alpha3" if "v1alpha3" in served or not served else served[0]
    return sorted(
        f"{_meta(f).get('namespace', '')}/{_meta(f)['name']}"
        for f in kube.list(f"networking.istio.io/{version}", "EnvoyFilter")
    )


def discover(kube: Kube, tick: Callable[[], None] | None = None) -> ClusterInventory:
    """Read revisions, tags, injector webhooks, namespaces, workloads and pods.

    Args:
        kube: Client of the cluster.
        tick: Called about once per page read (the activity's heartbeat): listing every pod
            of a large cluster takes tens of seconds.

    Returns:
        The inventory; ``api_requests`` counts the requests made.
    """

    def each(api_version: str, kind: str) -> Iterator[Obj]:
        return kube.list(api_version, kind, on_page=tick)

    before = kube.requests
    revisions = _revisions(kube)
    configs = list(each("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"))
    webhooks = _webhooks(configs)
    tags: dict[str, str] = {}
    for config in configs:
        labels = _meta(config).get("labels") or {}
        if labels.get(LABEL_TAG) and labels.get(LABEL_REV):
            tags[labels[LABEL_TAG]] = labels[LABEL_REV]

    rs_owner = replicaset_owners(each("apps/v1", "ReplicaSet"))
    stamps: dict[tuple[str, str, str], tuple[str | None, bool, dict[str, str]]] = {}
    ambient: list[str] = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for obj in each("apps/v1", kind):
            meta = _meta(obj)
            if kind == "DaemonSet" and meta["name"] in AMBIENT_DAEMONSETS:
                ambient.append(_ambient_component(obj))
            template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
            stamp = (template_meta.get("annotations") or {}).get(ANNOTATION_RESTART_STAMP)
            paused = bool((obj.get("spec") or {}).get("paused"))
            template_labels = template_meta.get("labels") or {}
            stamps[(meta.get("namespace", ""), kind, meta["name"])] = (
                stamp,
                paused,
                template_labels,
            )

    workloads: dict[str, dict[tuple[str, str], WorkloadInfo]] = {}
    for (namespace, kind, name), (stamp, paused, template_labels) in stamps.items():
        workloads.setdefault(namespace, {})[(kind, name)] = WorkloadInfo(
            kind=kind,
            name=name,
            restartable=True,
            restart_stamp=stamp,
            paused=paused,
            opt_in=template_labels.get(LABEL_POD_INJECT) == "true",
            template_revision=template_labels.get(LABEL_REV),
        )
    for pod in each("v1", "Pod"):
        namespace = _meta(pod).get("namespace", "")
        kind, name = pod_owner(pod, rs_owner)
        by_ns = workloads.setdefault(namespace, {})
        workload = by_ns.get((kind, name))
        if workload is None:
            workload = WorkloadInfo(
                kind=kind,
                name=name,
                restartable=kind in RESTARTABLE_KINDS,
            )
            by_ns[(kind, name)] = workload
        workload.add_pod(pod_info(pod))

    namespaces: list[NamespaceInfo] = []
    for ns in each("v1", "Namespace"):
        meta = _meta(ns)
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        if (ns.get("status") or {}).get("phase") == "Terminating":
            continue
        namespaces.append(
            NamespaceInfo(
                name=meta["name"],
                labels=labels,
                managed_by=gitops_owner(meta),
                effective_revision=effective_revision(labels, webhooks, tags),
                workloads=sorted(
                    workloads.get(meta["name"], {}).values(), key=lambda w: (w.kind, w.name)
                ),
            )
        )
    filters = _envoy_filters(kube)
    return ClusterInventory(
        support=SupportData(
            canary_max_minor_jump=SUPPORT.canary_max_minor_jump,
            ambient_max_minor_jump=SUPPORT.ambient_max_minor_jump,
            kubernetes={minor: list(k8s) for minor, k8s in SUPPORT.kubernetes.items()},
        ),
        ambient=sorted(ambient),
        gateways=_gateways(kube),
        cluster=kube.cluster,
        discovered_at=datetime.now(UTC),
        kubernetes_version=_kubernetes_version(kube),
        gateway_api_version=_gateway_api_version(kube),
        envoy_filters=filters[:MAX_LISTED_ENVOY_FILTERS],
        envoy_filter_count=len(filters),
        revisions=revisions,
        tags=dict(sorted(tags.items())),
        webhooks=webhooks,
        namespaces=sorted(namespaces, key=lambda n: n.name),
        api_requests=kube.requests - before,
    )
