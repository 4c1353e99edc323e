"""Inputs and outputs of the Kubernetes activities."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from istio_upgrade.models.plan import (
    GroupedLabels,
    Plan,
    PrecheckReport,
    WorkloadRevision,
)
from istio_upgrade.models.progress import Diagnostic, Straggler
from istio_upgrade.models.spec import ClusterRef, CRDSpec, InstallerSpec, UpgradeSpec


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class DiscoverInput(_Model):
    cluster: ClusterRef
    upgrade_id: str = ""


class PlanInput(_Model):
    """Input of ``plan_cluster``: discover the cluster and plan the upgrade of ``spec``."""

    spec: UpgradeSpec
    upgrade_id: str
    """The workflow id, to recognise a target revision installed by an earlier attempt."""


class PlanningResult(_Model):
    """What ``plan_cluster`` hands back: the plan and the facts of the inventory the workflow
    uses later — never the inventory itself, which grows with every pod of the cluster
    (2.4 MB for 2,000 namespaces of 5 Deployments)."""

    plan: Plan
    report: PrecheckReport
    tags: dict[str, str] = Field(default_factory=dict)
    """Tag → revision at discovery, restored if the upgrade rolls back after moving tags."""
    gateway_api: bool = False
    """The Gateway API CRDs are installed (the permission check asks for Gateways then)."""
    namespaces: int = 0
    """Namespaces discovered."""
    pods: int = 0
    """Active pods discovered."""
    api_requests: int = 0
    """API requests discovery made."""


LOCK_CONFIGMAP = "istio-upgrade-lock"
"""ConfigMap in ``istio-system`` naming the upgrade that holds the cluster."""
LOCK_DELETE_COMMAND = f"kubectl -n istio-system delete configmap {LOCK_CONFIGMAP}"
"""What an operator runs to clear a lock no running upgrade holds."""


def lock_busy_message(cluster: str, holder: str | None) -> str:
    """Why a cluster is refused, and how to release a lock whose upgrade no longer runs."""
    return (
        f"cluster {cluster} is locked by upgrade {holder} (ConfigMap "
        f"istio-system/{LOCK_CONFIGMAP}); wait for it to end or abort it. If that upgrade no "
        "longer runs (its rollback was incomplete, or it was terminated), repair the cluster, "
        f"then release the lock: istio-upgrade unlock --cluster {cluster}"
    )


class LockInput(_Model):
    """The cluster lock of one upgrade (``holder``: ``<workflow id>@<first run id>``)."""

    cluster: ClusterRef
    holder: str


class LockResult(_Model):
    acquired: bool
    holder: str | None = None
    """Who holds the lock now (this upgrade when ``acquired``)."""


class InstallInput(_Model):
    cluster: ClusterRef
    version: str
    revision: str
    hub: str = "docker.io/istio"
    installer: InstallerSpec = Field(default_factory=InstallerSpec)
    upgrade_id: str


class BundleCheckInput(_Model):
    cluster: ClusterRef
    version: str
    revision: str
    installer: InstallerSpec
    crds: CRDSpec | None = None


class BundleCheckResult(_Model):
    problems: list[str] = Field(default_factory=list)
    """Why a bundle would be refused (unreadable, objects of something else than the
    revision, CRDs bundle with other objects); empty when both are fine."""
    revision_objects: int = 0
    crds: int = 0
    skipped: list[str] = Field(default_factory=list)
    """Objects the install leaves to the tag move."""


class CrdsInput(_Model):
    cluster: ClusterRef
    crds: CRDSpec
    version: str
    """The target version, named in errors."""


class CrdsResult(_Model):
    applied: list[str] = Field(default_factory=list)
    """``CustomResourceDefinition/<name>`` of every CRD applied (created or updated)."""


class InstallResult(_Model):
    applied: list[str] = Field(default_factory=list)
    """``Kind/namespace/name`` of every object applied."""
    inventory_configmap: str
    skipped: list[str] = Field(default_factory=list)
    """Bundle objects left to the tag move (tag webhooks, ``istiod-default-validator``)."""


class RevisionInput(_Model):
    """Names one revision of one cluster."""

    cluster: ClusterRef
    revision: str
    timeout_seconds: float = 300.0
    installer: InstallerSpec | None = None
    """Set for strategy ``sail`` (the revision is an ``IstioRevision``); None: ``manifests``."""


class UninstallResult(_Model):
    deleted: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    """Objects already gone (a retried uninstall)."""
    from_inventory: bool = False


class RelabelInput(_Model):
    """Set the injection labels of namespaces to exact values (None removes the label)."""

    cluster: ClusterRef
    labels: GroupedLabels
    skip_missing: bool = False
    """Skip namespaces deleted since discovery (undo steps: nothing left to restore)."""
    batch: int | None = None
    """The batch relabelled, named in the Events left on the namespaces."""


class RestartInput(_Model):
    cluster: ClusterRef
    namespaces: list[str]
    stamp: str
    """``<workflow id>/<step>``; a workload already carrying it is not restarted again."""
    max_concurrent: int = 5
    skip_missing: bool = False
    """A rollback skips namespaces deleted since discovery (and says so) instead of failing."""


class RestartResult(_Model):
    restarted: list[str] = Field(default_factory=list)
    already_restarted: list[str] = Field(default_factory=list)
    """Carried the stamp already: restarted by an earlier attempt of this activity."""
    not_restartable: list[str] = Field(default_factory=list)
    """Bare pods and Job pods with a sidecar: reported, never deleted."""
    missing_namespaces: list[str] = Field(default_factory=list)
    """Namespaces deleted since discovery, skipped (``skip_missing``)."""


class RolloutInput(_Model):
    cluster: ClusterRef
    namespaces: list[str]
    timeout_seconds: float = 600.0
    poll_seconds: float = 1.0
    stamp_prefix: str | None = None
    """Replace pods of OnDelete workloads only when their template carries a restart stamp
    starting with this (this upgrade's); None: every pending OnDelete workload."""


class RolloutReport(_Model):
    complete: bool
    pending: list[str] = Field(default_factory=list)
    """``namespace/Kind/name: why`` of workloads not rolled out at the deadline."""
    waited_seconds: float = 0.0


class NamespacesInput(_Model):
    """Names namespaces of one cluster."""

    cluster: ClusterRef
    namespaces: list[str]
    drifted_from: str | None = None
    """``read_namespace_labels``: answer only the namespaces whose labels are not exactly
    ``istio.io/rev=<this>`` without ``istio-injection`` (None: every namespace named)."""


class WorkloadLabelInput(_Model):
    """Set the pod template ``istio.io/rev`` label of workloads, restarting each once."""

    cluster: ClusterRef
    workloads: list[WorkloadRevision]
    stamp: str
    """Upgrade id and step: a workload already patched with it is left alone."""
    expect_revision: str | None = None
    """For Gateways: wait until istiod has re-rendered each one's Deployment for this
    revision (its pod template's ``istio.io/rev``)."""


class VerifyInput(_Model):
    cluster: ClusterRef
    namespaces: list[str]
    expected_revision: str
    only_workloads: dict[str, list[str]] = Field(default_factory=dict)
    """Namespace → ``Kind/name`` of the workloads to check there (namespaces migrated per
    workload, whose other pods have no sidecar); every pod elsewhere."""
    unmanaged_pods: Literal["fail", "warn"] = "warn"
    """Pods of controllers this tool does not restart: a warning, or a straggler."""


class VerifyReport(_Model):
    ok: bool
    pods_checked: int = 0
    stragglers: list[Straggler] = Field(default_factory=list)
    not_restartable: list[str] = Field(default_factory=list)
    unmanaged: list[str] = Field(default_factory=list)
    """Pods of controllers this tool does not restart (Argo Rollouts, operators), left out."""
    host_network_skipped: list[str] = Field(default_factory=list)
    """hostNetwork pods: never injected, so not checked."""


class DiagnosticsInput(_Model):
    cluster: ClusterRef
    stragglers: list[Straggler]
    tail_lines: int = 20


class MoveTagsInput(_Model):
    """Point tags at a revision, or remove them."""

    cluster: ClusterRef
    tags: list[str]
    revision: str | None
    """Revision the tags point at afterwards; None deletes the tags' objects."""
    original: dict[str, str | None] | None = None
    """Tag → the revision it named before the upgrade (None: absent), from discovery."""
    installer: InstallerSpec | None = None
    """Set for strategy ``sail`` (the tags are ``IstioRevisionTag``s); None: ``manifests``."""


class MoveTagsResult(_Model):
    previous: dict[str, str | None] = Field(default_factory=dict)
    """Tag → revision it pointed at before (None: the tag did not exist), for rollback."""
    applied: list[str] = Field(default_factory=list)


class UnusedReport(_Model):
    unused: bool
    blockers: list[str] = Field(default_factory=list)
    """Why the revision is still in use (pods, namespace labels, tags)."""
    ignored_pods: int = 0
    """Completed or failed pods annotated with it (they do not block removal)."""


class DiagnosticsResult(_Model):
    diagnostics: list[Diagnostic] = Field(default_factory=list)


class PrometheusProbe(_Model):
    """What the gate's Prometheus answered to one query before any write."""

    reachable: bool = True
    """False: no answer at all (the gate will wait for it, never pass without it)."""
    problem: str | None = None
    """What is wrong: it answered, but not as the Prometheus API (HTML, a redirect …), or why
    it could not be reached."""
