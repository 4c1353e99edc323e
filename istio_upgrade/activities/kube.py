"""The Kubernetes activities of an upgrade, one per workflow step.

Sync activities: the official ``kubernetes`` client blocks, so the worker runs them on a
thread pool. Long waits heartbeat and resume from their heartbeat details after a worker
crash; mutations are idempotent.
"""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import (
    audit,
    diagnostics,
    discovery,
    installer,
    lock,
    migration,
    permissions,
    sail,
)
from istio_upgrade.activities.kube_client import KubeClients
from istio_upgrade.models.activities import (
    BundleCheckInput,
    BundleCheckResult,
    CrdsInput,
    CrdsResult,
    DiagnosticsInput,
    DiagnosticsResult,
    DiscoverInput,
    InstallInput,
    InstallResult,
    LockInput,
    LockResult,
    MoveTagsInput,
    MoveTagsResult,
    NamespacesInput,
    PlanInput,
    PlanningResult,
    RelabelInput,
    RestartInput,
    RestartResult,
    RevisionInput,
    RolloutInput,
    RolloutReport,
    UninstallResult,
    UnusedReport,
    VerifyInput,
    VerifyReport,
    WorkloadLabelInput,
)
from istio_upgrade.models.inventory import ClusterInventory
from istio_upgrade.models.permissions import PermissionReport, PermissionsInput
from istio_upgrade.models.plan import NamespaceLabels
from istio_upgrade.models.spec import ClusterRef
from istio_upgrade.planning import plan_upgrade


def _writing(reason: str, action: str, batch: int | None = None) -> audit.WriteContext:
    """The step of a mutating activity: every write heartbeats and leaves an Event."""
    return audit.WriteContext(
        upgrade_id=activity.info().workflow_id or "unknown",
        reason=reason,
        action=action,
        batch=batch,
        tick=activity.heartbeat,
    )


def _batch_of(stamp: str) -> int | None:
    """The batch a restart stamp (``…/batch-3``, ``…/rollback-3``) belongs to."""
    tail = stamp.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _wait_beat(details: dict[str, Any]) -> None:
    """A wait's heartbeat; once the worker shuts down the wait stops at once.

    A graceful shutdown lets mutations finish, but a wait may last many minutes: it fails this
    attempt (retryable) so that another worker resumes it from these heartbeat details.
    """
    activity.heartbeat(details)
    if activity.is_worker_shutdown():
        raise ApplicationError(
            "the worker is shutting down; another worker resumes this wait",
            type="WorkerShutdown",
        )


def _details() -> dict[str, Any]:
    """The last heartbeat details of this activity (a previous attempt's), or ``{}``."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict):
        return dict(details[0])
    return {}


class KubeActivities:
    """Activities bound to one kubeconfig; one ``kubernetes`` client per context, cached."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        self.clients = KubeClients(kubeconfig)

    @activity.defn(name="discover")
    def discover(self, spec: DiscoverInput) -> ClusterInventory:
        """Read revisions, tags, webhooks, namespaces, workloads and pods of the cluster."""
        return discovery.discover(self.clients.for_cluster(spec.cluster), activity.heartbeat)

    @activity.defn(name="plan_cluster")
    def plan_cluster(self, spec: PlanInput) -> PlanningResult:
        """Discover the cluster and plan the upgrade next to it: only the plan leaves the worker."""
        inventory = discovery.discover(
            self.clients.for_cluster(spec.spec.cluster), activity.heartbeat
        )
        plan, report = plan_upgrade(inventory, spec.spec, spec.upgrade_id, per_workload=True)
        return PlanningResult(
            plan=plan,
            report=report,
            tags=dict(inventory.tags),
            gateway_api=inventory.gateway_api_version is not None,
            namespaces=len(inventory.namespaces),
            pods=sum(w.active_pods for ns in inventory.namespaces for w in ns.workloads),
            api_requests=inventory.api_requests,
        )

    @activity.defn(name="check_bundles")
    def check_bundles(self, spec: BundleCheckInput) -> BundleCheckResult:
        """Read and sort the spec's bundles, writing nothing (the precheck's view)."""
        if spec.installer.strategy == "sail":
            return sail.check(self.clients.for_cluster(spec.cluster), spec)
        return installer.check_bundles(self.clients.for_cluster(spec.cluster), spec)

    @activity.defn(name="check_permissions")
    def check_permissions(self, spec: PermissionsInput) -> PermissionReport:
        """Ask the API server whether the worker may send every request of the upgrade."""
        return permissions.check(self.clients.for_cluster(spec.cluster), spec, activity.heartbeat)

    @activity.defn(name="apply_crds")
    def apply_crds(self, spec: CrdsInput) -> CrdsResult:
        """Server-side apply the target's Istio CRDs (never deleted by a rollback)."""
        with audit.writing(_writing("CRDsApplied", f"Istio {spec.version} CRDs applied")):
            return installer.apply_crds(self.clients.for_cluster(spec.cluster), spec)

    @activity.defn(name="install_revision")
    def install_revision(self, spec: InstallInput) -> InstallResult:
        """Server-side apply the target revision's bundle and record its inventory."""
        action = f"installed as part of revision {spec.revision} (Istio {spec.version})"
        with audit.writing(_writing("RevisionInstalled", action)):
            if spec.installer.strategy == "sail":
                return sail.install(self.clients.for_cluster(spec.cluster), spec)
            return installer.install(self.clients.for_cluster(spec.cluster), spec)

    @activity.defn(name="wait_revision_ready")
    def wait_revision_ready(self, spec: RevisionInput) -> None:
        """Wait until ``istiod-<rev>`` is available; the deadline survives worker restarts."""
        started = float(_details().get("started", time.time()))
        if spec.installer is not None and spec.installer.strategy == "sail":
            sail.wait_ready(
                self.clients.for_cluster(spec.cluster),
                spec.installer,
                spec.revision,
                spec.timeout_seconds,
                started,
                lambda s: _wait_beat({"started": s}),
            )
            return
        installer.wait_ready(
            self.clients.for_cluster(spec.cluster),
            spec.revision,
            spec.timeout_seconds,
            started,
            lambda s: _wait_beat({"started": s}),
        )

    @activity.defn(name="read_namespace_labels")
    def read_namespace_labels(self, spec: NamespacesInput) -> list[NamespaceLabels]:
        """The injection labels of namespaces as they are now (deleted ones are left out)."""
        found = migration.read_labels(self.clients.for_cluster(spec.cluster), spec.namespaces)
        if spec.drifted_from is None:
            return found
        # The result is recorded: the namespaces still as migrated need not be.
        return [
            n for n in found if n.istio_injection is not None or n.istio_rev != spec.drifted_from
        ]

    @activity.defn(name="label_workloads")
    def label_workloads(self, spec: WorkloadLabelInput) -> list[str]:
        """Set workloads' pod template ``istio.io/rev``, restarting each once."""
        kube = self.clients.for_cluster(spec.cluster)
        gateways = [w for w in spec.workloads if w.kind == "Gateway"]
        others = [w for w in spec.workloads if w.kind != "Gateway"]
        action = f"istio.io/rev set to {spec.expect_revision or 'its original value'}"
        with audit.writing(_writing("RevisionLabeled", action, _batch_of(spec.stamp))):
            return migration.label_workloads(kube, others, spec.stamp) + migration.label_gateways(
                kube, gateways, spec.expect_revision, tick=activity.heartbeat
            )

    @activity.defn(name="relabel_namespaces")
    def relabel_namespaces(self, spec: RelabelInput) -> list[str]:
        """Set the injection labels of namespaces to exact values."""
        action = "injection labels set" + (" back" if spec.skip_missing else "")
        with audit.writing(_writing("InjectionRelabeled", action, spec.batch)):
            return migration.relabel(
                self.clients.for_cluster(spec.cluster), spec.labels, spec.skip_missing
            )

    @activity.defn(name="restart_workloads")
    def restart_workloads(self, spec: RestartInput) -> RestartResult:
        """Rolling-restart the batch's workloads once per stamp, with bounded concurrency."""
        action = f"restarted onto its namespace's revision (stamp {spec.stamp})"
        with audit.writing(_writing("Restarted", action, _batch_of(spec.stamp))):
            return migration.restart(
                self.clients.for_cluster(spec.cluster),
                spec.namespaces,
                spec.stamp,
                spec.max_concurrent,
                lambda ref: activity.heartbeat({"last": ref}),
                spec.skip_missing,
            )

    @activity.defn(name="wait_rollouts")
    def wait_rollouts(self, spec: RolloutInput) -> RolloutReport:
        """Wait for every workload of the namespaces to roll out (resumes from heartbeats)."""
        details = _details()
        return migration.wait_rollouts(
            self.clients.for_cluster(spec.cluster),
            spec.namespaces,
            spec.timeout_seconds,
            spec.poll_seconds,
            set(details.get("done", [])),
            float(details.get("started", time.time())),
            lambda done, started: _wait_beat({"done": done, "started": started}),
            spec.stamp_prefix,
        )

    @activity.defn(name="verify_namespaces")
    def verify_namespaces(self, spec: VerifyInput) -> VerifyReport:
        """Check that every live pod of the namespaces runs a sidecar of the expected revision."""
        return migration.verify(
            self.clients.for_cluster(spec.cluster),
            spec.namespaces,
            spec.expected_revision,
            spec.unmanaged_pods,
            spec.only_workloads,
        )

    @activity.defn(name="collect_diagnostics")
    def collect_diagnostics(self, spec: DiagnosticsInput) -> DiagnosticsResult:
        """Events and proxy log tails of at most five stragglers."""
        return DiagnosticsResult(
            diagnostics=diagnostics.collect(
                self.clients.for_cluster(spec.cluster), spec.stragglers, spec.tail_lines
            )
        )

    @activity.defn(name="move_tags")
    def move_tags(self, spec: MoveTagsInput) -> MoveTagsResult:
        """Point revision tags at a revision (or remove them)."""
        action = f"revision tag(s) {', '.join(spec.tags)} pointed at {spec.revision or 'nothing'}"
        with audit.writing(_writing("RevisionTagMoved", action)):
            if spec.installer is not None and spec.installer.strategy == "sail":
                return sail.move_tags(
                    self.clients.for_cluster(spec.cluster),
                    spec.installer,
                    spec.tags,
                    spec.revision,
                    spec.original,
                    activity.heartbeat,
                )
            return installer.move_tags(
                self.clients.for_cluster(spec.cluster), spec.tags, spec.revision, spec.original
            )

    @activity.defn(name="verify_revision_unused")
    def verify_revision_unused(self, spec: RevisionInput) -> UnusedReport:
        """Whether live pods, namespace labels or tags still use a revision."""
        return installer.revision_unused(
            self.clients.for_cluster(spec.cluster), spec.revision, activity.heartbeat
        )

    @activity.defn(name="uninstall_revision")
    def uninstall_revision(self, spec: RevisionInput) -> UninstallResult:
        """Delete a revision's control plane (by its inventory when this product installed it)."""
        action = f"deleted with revision {spec.revision}"
        with audit.writing(_writing("RevisionUninstalled", action)):
            if spec.installer is not None and spec.installer.strategy == "sail":
                return sail.uninstall(
                    self.clients.for_cluster(spec.cluster),
                    spec.installer,
                    spec.revision,
                    activity.heartbeat,
                )
            return installer.uninstall(self.clients.for_cluster(spec.cluster), spec.revision)

    @activity.defn(name="acquire_cluster_lock")
    def acquire_cluster_lock(self, spec: LockInput) -> LockResult:
        """Take the cluster's one-upgrade-at-a-time lock (re-entrant for the same upgrade)."""
        return lock.acquire(self.clients.for_cluster(spec.cluster), spec.holder)

    @activity.defn(name="release_cluster_lock")
    def release_cluster_lock(self, spec: LockInput) -> bool:
        """Drop the cluster lock if this upgrade holds it."""
        return lock.release(self.clients.for_cluster(spec.cluster), spec.holder)

    @activity.defn(name="cluster_lock_holder")
    def cluster_lock_holder(self, cluster: ClusterRef) -> str | None:
        """The upgrade holding the cluster lock, if any."""
        return lock.holder(self.clients.for_cluster(cluster))

    def all(self) -> list[Any]:
        """Every activity method, for ``Worker(activities=...)``."""
        return [
            self.discover,
            self.plan_cluster,
            self.check_bundles,
            self.check_permissions,
            self.apply_crds,
            self.install_revision,
            self.wait_revision_ready,
            self.read_namespace_labels,
            self.label_workloads,
            self.relabel_namespaces,
            self.restart_workloads,
            self.wait_rollouts,
            self.verify_namespaces,
            self.collect_diagnostics,
            self.move_tags,
            self.verify_revision_unused,
            self.uninstall_revision,
            self.acquire_cluster_lock,
            self.release_cluster_lock,
            self.cluster_lock_holder,
        ]

    def close(self) -> None:
        self.clients.close()
