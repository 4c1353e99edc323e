"""What discovery found in the cluster: revisions, tags, webhooks, namespaces, workloads, pods."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"]
RESTARTABLE_KINDS: frozenset[str] = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class RevisionInfo(_Model):
    """One installed istiod revision."""

    name: str
    """Revision name (``1-23-4``; ``default`` for an unrevisioned istiod)."""
    version: str | None = None
    """Version from the pilot image tag (``1.23.4``)."""
    ready: bool = False
    """The istiod Deployment has all replicas available."""
    deployment: str = ""
    """Name of the istiod Deployment."""
    installed_by: str | None = None
    """Workflow id recorded in the inventory ConfigMap when this product installed it."""


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
    """A pod owner (or a bare pod) of a namespace."""

    kind: WorkloadKind
    name: str
    restartable: bool
    """Deployments, StatefulSets and DaemonSets restart; bare pods and Job pods do not."""
    pods: list[PodInfo] = Field(default_factory=list)
    restart_stamp: str | None = None
    """The last ``istio-upgrade.io/restart-stamp`` written on its pod template."""


class NamespaceInfo(_Model):
    """A namespace, its injection labels and its workloads."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    effective_revision: str | None = None
    """Revision a new plain pod would be injected by (webhooks evaluated like the API server)."""
    workloads: list[WorkloadInfo] = Field(default_factory=list)

    @property
    def gateway(self) -> bool:
        """Runs an injected gateway (``inject.istio.io/templates: gateway``)."""
        return any(p.gateway for w in self.workloads for p in w.pods)

    @property
    def pods(self) -> list[PodInfo]:
        return [p for w in self.workloads for p in w.pods]


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

    def revision(self, name: str) -> RevisionInfo | None:
        return next((r for r in self.revisions if r.name == name), None)

    def namespace(self, name: str) -> NamespaceInfo | None:
        return next((n for n in self.namespaces if n.name == name), None)
