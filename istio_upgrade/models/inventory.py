"""What discovery found in the cluster: revisions, tags, webhooks, namespaces, workloads, pods."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

WorkloadKind = str
"""``Deployment``, ``StatefulSet``, ``DaemonSet``, ``Job``, ``Pod`` (bare), or the kind of a
controller this tool does not restart (``Rollout`` of Argo Rollouts, an operator's kind)."""
RESTARTABLE_KINDS: frozenset[str] = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
NO_SIDECAR = "none"
"""Key of ``WorkloadInfo.revisions`` counting pods without a sidecar."""


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class RevisionInfo(_Model):
    """One installed istiod revision."""

    name: str
    """Revision name (``1-30-3``; ``default`` for an unrevisioned istiod)."""
    version: str | None = None
    """Version from the pilot image tag (``1.30.3``)."""
    ready: bool = False
    """The istiod Deployment has all replicas available."""
    deployment: str = ""
    """Name of the istiod Deployment."""
    installed_by: str | None = None
    """Workflow id recorded in the inventory ConfigMap when this product installed it."""
    helm_release: str | None = None
    """``namespace/name`` of the Helm release the istiod Deployment belongs to, if any."""


class WebhookInfo(_Model):
    """One webhook of an injector MutatingWebhookConfiguration."""

    configuration: str
    """MutatingWebhookConfiguration name."""
    name: str
    revision: str | None = None
    """The configuration's ``istio.io/rev`` label: the revision it injects with."""
    tag: str | None = None
    """The configuration's ``istio.io/tag`` label, for revision tags."""
    namespace_selector: dict[str, Any] = Field(default_factory=dict)
    object_selector: dict[str, Any] = Field(default_factory=dict)


class PodInfo(_Model):
    """One pod and the sidecar it runs."""

    name: str
    phase: str = "Pending"
    ready: bool = False
    terminating: bool = False
    injected_revision: str | None = None
    """From the ``istio.io/rev`` annotation or ``sidecar.istio.io/status`` (never a label)."""
    proxy_version: str | None = None
    """Image tag of the ``istio-proxy`` container."""
    opted_out: bool = False
    """Labelled ``sidecar.istio.io/inject=false``."""
    gateway: bool = False
    """Annotated ``inject.istio.io/templates: gateway``."""

    @property
    def active(self) -> bool:
        """Running or starting: completed, failed and terminating pods do not count."""
        return self.phase in {"Pending", "Running", "Unknown"} and not self.terminating


class WorkloadInfo(_Model):
    """A pod owner (or a bare pod) of a namespace, with its pods summarised.

    Pods are counted, not listed, for restartable workloads: an inventory of tens of
    thousands of pods must stay far below Temporal's payload limit. Pods of non-restartable
    workloads (the ones an operator must handle by hand) are listed in ``pods``.
    """

    kind: WorkloadKind
    name: str
    restartable: bool
    """Deployments, StatefulSets and DaemonSets restart; bare pods and Job pods do not."""
    active_pods: int = 0
    """Pods running or starting (not completed, failed or terminating)."""
    revisions: dict[str, int] = Field(default_factory=dict)
    """Injecting revision → active pods (``none``: no sidecar)."""
    proxy_versions: dict[str, int] = Field(default_factory=dict)
    """``istio-proxy`` image tag → active pods."""
    gateway: bool = False
    """Its pods are injected gateways (``inject.istio.io/templates: gateway``)."""
    pods: list[PodInfo] = Field(default_factory=list)
    """Every pod, for non-restartable workloads only."""
    restart_stamp: str | None = None
    """The last ``istio-upgrade.io/restart-stamp`` written on its pod template."""
    paused: bool = False
    """A Deployment whose rollout is paused (``spec.paused``): a restart would never roll."""
    opt_in: bool = False
    """Its pod template carries the label ``sidecar.istio.io/inject: "true"``."""
    template_revision: str | None = None
    """Its pod template's ``istio.io/rev`` label (a revision or a tag)."""

    @model_validator(mode="after")
    def _summarise_listed_pods(self) -> WorkloadInfo:
        # Inventories recorded before pods were summarised list every pod; derive the counts
        # so their histories replay to the same plan.
        if self.pods and not self.active_pods and not self.revisions and not self.gateway:
            listed, self.pods = self.pods, []
            for pod in listed:
                self._count(pod)
            self.pods = listed
        return self

    def _count(self, pod: PodInfo) -> None:
        if pod.gateway:
            self.gateway = True
        if not pod.active:
            return
        self.active_pods += 1
        rev = pod.injected_revision or NO_SIDECAR
        self.revisions[rev] = self.revisions.get(rev, 0) + 1
        if pod.proxy_version:
            self.proxy_versions[pod.proxy_version] = (
                self.proxy_versions.get(pod.proxy_version, 0) + 1
            )

    def add_pod(self, pod: PodInfo) -> None:
        """Count a pod (and keep it when the workload cannot be restarted)."""
        if not self.restartable:
            self.pods.append(pod)
        self._count(pod)


class NamespaceInfo(_Model):
    """A namespace, its injection labels and its workloads."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    effective_revision: str | None = None
    """Revision a new plain pod would be injected by (webhooks evaluated like the API server)."""
    workloads: list[WorkloadInfo] = Field(default_factory=list)
    managed_by: str | None = None
    """A GitOps tool owning the namespace (``Argo CD``, ``Flux``), from its marks."""

    @property
    def gateway(self) -> bool:
        """Runs an injected gateway (``inject.istio.io/templates: gateway``)."""
        return any(w.gateway for w in self.workloads)

    @property
    def pod_revisions(self) -> dict[str, int]:
        """Injecting revision → active pods of the whole namespace."""
        total: dict[str, int] = {}
        for workload in self.workloads:
            for rev, n in workload.revisions.items():
                total[rev] = total.get(rev, 0) + n
        return total


class GatewayInfo(_Model):
    """A Gateway API ``Gateway`` istiod deploys (class ``istio`` or ``istio-waypoint``)."""

    namespace: str
    name: str
    gateway_class: str
    revision_label: str | None = None
    """The Gateway's own ``istio.io/rev`` label."""
    deployment: str
    """The Deployment istiod renders for it (``<name>-istio``, the name for a waypoint)."""


class SupportData(_Model):
    """Istio's support statement as discovery read it (``istio/data/support.yaml``).

    Part of the inventory, so an upgrade plans against the statement of the day it started:
    editing the data file changes no running upgrade's replay.
    """

    canary_max_minor_jump: int = 2
    ambient_max_minor_jump: int = 1
    kubernetes: dict[str, list[str]] = Field(default_factory=dict)
    """Istio minor (``1.24``) → the Kubernetes minors it supports."""


class ClusterInventory(_Model):
    """Everything the plan and precheck need, read in one discovery pass."""

    cluster: str
    discovered_at: datetime
    revisions: list[RevisionInfo] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    """Tag → revision."""
    webhooks: list[WebhookInfo] = Field(default_factory=list)
    namespaces: list[NamespaceInfo] = Field(default_factory=list)
    api_requests: int = 0
    """API requests discovery made (for the per-namespace cost)."""
    kubernetes_version: str | None = None
    """The API server's ``gitVersion`` (``v1.32.4``); None when not read."""
    gateway_api_version: str | None = None
    """``gateway.networking.k8s.io/bundle-version`` of the Gateway API CRDs, when installed."""
    envoy_filters: list[str] = Field(default_factory=list)
    """``namespace/name`` of the EnvoyFilters (at most 50 listed)."""
    envoy_filter_count: int = 0
    support: SupportData | None = None
    """None in inventories recorded before discovery read the support statement: then only
    the two-minor skew rule applies, as it did."""
    gateways: list[GatewayInfo] = Field(default_factory=list)
    """Gateway API gateways and waypoints of istiod's classes."""
    ambient: list[str] = Field(default_factory=list)
    """Ambient data-plane components found: ``DaemonSet <ns>/ztunnel (1.30.3)``, istio-cni."""

    def revision(self, name: str) -> RevisionInfo | None:
        return next((r for r in self.revisions if r.name == name), None)

    def namespace(self, name: str) -> NamespaceInfo | None:
        return next((n for n in self.namespaces if n.name == name), None)
