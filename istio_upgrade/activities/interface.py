"""The activities as the workflows see them: one typed stub per activity, no implementation.

Workflows call activities by reference (``run_step(discover, DiscoverInput(...), ...)``) so
that mypy checks every argument and result, yet must not import the implementations: those
import ``kubernetes`` and ``httpx``, which have no business inside the workflow sandbox. Each
stub carries the registered name and the exact signature of its implementation (the methods
of ``KubeActivities`` in ``kube.py``, the functions of ``prometheus.py``);
``tests/unit/test_activity_interface.py`` fails when the two drift apart. Only the worker
registers the implementations; calling a stub is a bug.

Imports only ``temporalio.activity`` and the contracts of ``istio_upgrade.models``.
"""

from __future__ import annotations

from typing import NoReturn

from temporalio import activity

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
    PrometheusProbe,
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
from istio_upgrade.models.fleet import FollowInput, FollowResult
from istio_upgrade.models.gate import GateMeasurements, GateQuery
from istio_upgrade.models.inventory import ClusterInventory
from istio_upgrade.models.notifications import NotifyInput, NotifyResult
from istio_upgrade.models.permissions import PermissionReport, PermissionsInput
from istio_upgrade.models.plan import NamespaceLabels
from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.spec import ClusterRef


def _stub(name: str) -> NoReturn:
    raise NotImplementedError(
        f"activity {name!r} is an interface stub: the worker registers its implementation "
        "(istio_upgrade.worker); workflows only schedule it"
    )


# Kubernetes (sync; ``KubeActivities`` in kube.py) ------------------------------------------


@activity.defn(name="discover")
def discover(spec: DiscoverInput) -> ClusterInventory:
    """Read revisions, tags, webhooks, namespaces, workloads and pods of the cluster."""
    _stub("discover")


@activity.defn(name="plan_cluster")
def plan_cluster(spec: PlanInput) -> PlanningResult:
    """Discover the cluster and plan the upgrade next to it: only the plan leaves the worker."""
    _stub("plan_cluster")


@activity.defn(name="check_bundles")
def check_bundles(spec: BundleCheckInput) -> BundleCheckResult:
    """Read and sort the spec's bundles, writing nothing (the precheck's view)."""
    _stub("check_bundles")


@activity.defn(name="check_permissions")
def check_permissions(spec: PermissionsInput) -> PermissionReport:
    """Ask the API server whether the worker may send every request of the upgrade."""
    _stub("check_permissions")


@activity.defn(name="apply_crds")
def apply_crds(spec: CrdsInput) -> CrdsResult:
    """Server-side apply the target's Istio CRDs (never deleted by a rollback)."""
    _stub("apply_crds")


@activity.defn(name="install_revision")
def install_revision(spec: InstallInput) -> InstallResult:
    """Server-side apply the target revision's bundle and record its inventory."""
    _stub("install_revision")


@activity.defn(name="wait_revision_ready")
def wait_revision_ready(spec: RevisionInput) -> None:
    """Wait until ``istiod-<rev>`` is available; the deadline survives worker restarts."""
    _stub("wait_revision_ready")


@activity.defn(name="read_namespace_labels")
def read_namespace_labels(spec: NamespacesInput) -> list[NamespaceLabels]:
    """The injection labels of namespaces as they are now (deleted ones are left out)."""
    _stub("read_namespace_labels")


@activity.defn(name="label_workloads")
def label_workloads(spec: WorkloadLabelInput) -> list[str]:
    """Set workloads' pod template ``istio.io/rev``, restarting each once."""
    _stub("label_workloads")


@activity.defn(name="relabel_namespaces")
def relabel_namespaces(spec: RelabelInput) -> list[str]:
    """Set the injection labels of namespaces to exact values."""
    _stub("relabel_namespaces")


@activity.defn(name="restart_workloads")
def restart_workloads(spec: RestartInput) -> RestartResult:
    """Rolling-restart the batch's workloads once per stamp, with bounded concurrency."""
    _stub("restart_workloads")


@activity.defn(name="wait_rollouts")
def wait_rollouts(spec: RolloutInput) -> RolloutReport:
    """Wait for every workload of the namespaces to roll out (resumes from heartbeats)."""
    _stub("wait_rollouts")


@activity.defn(name="verify_namespaces")
def verify_namespaces(spec: VerifyInput) -> VerifyReport:
    """Check that every live pod of the namespaces runs a sidecar of the expected revision."""
    _stub("verify_namespaces")


@activity.defn(name="collect_diagnostics")
def collect_diagnostics(spec: DiagnosticsInput) -> DiagnosticsResult:
    """Events and proxy log tails of at most five stragglers."""
    _stub("collect_diagnostics")


@activity.defn(name="move_tags")
def move_tags(spec: MoveTagsInput) -> MoveTagsResult:
    """Point revision tags at a revision (or remove them)."""
    _stub("move_tags")


@activity.defn(name="verify_revision_unused")
def verify_revision_unused(spec: RevisionInput) -> UnusedReport:
    """Whether live pods, namespace labels or tags still use a revision."""
    _stub("verify_revision_unused")


@activity.defn(name="uninstall_revision")
def uninstall_revision(spec: RevisionInput) -> UninstallResult:
    """Delete a revision's control plane (by its inventory when this product installed it)."""
    _stub("uninstall_revision")


@activity.defn(name="acquire_cluster_lock")
def acquire_cluster_lock(spec: LockInput) -> LockResult:
    """Take the cluster's one-upgrade-at-a-time lock (re-entrant for the same upgrade)."""
    _stub("acquire_cluster_lock")


@activity.defn(name="release_cluster_lock")
def release_cluster_lock(spec: LockInput) -> bool:
    """Drop the cluster lock if this upgrade holds it."""
    _stub("release_cluster_lock")


@activity.defn(name="cluster_lock_holder")
def cluster_lock_holder(cluster: ClusterRef) -> str | None:
    """The upgrade holding the cluster lock, if any."""
    _stub("cluster_lock_holder")


# Prometheus (async; prometheus.py) -------------------------------------------------------


@activity.defn(name="measure_gate")
async def measure_gate(query: GateQuery) -> GateMeasurements:
    """Measure the gate's SLIs, liveness and control-plane health at ``query.evaluated_at``."""
    _stub("measure_gate")


@activity.defn(name="probe_prometheus")
async def probe_prometheus(
    prometheus_url: str, auth: PrometheusAuth | None = None
) -> PrometheusProbe:
    """Whether the gate's Prometheus answers as the Prometheus API, or what is wrong."""
    _stub("probe_prometheus")


@activity.defn(name="query_revision_xds")
async def query_revision_xds(
    prometheus_url: str, revision: str, auth: PrometheusAuth | None = None
) -> float | None:
    """Proxies connected to ``istiod-<revision>`` (``pilot_xds``), or None without data."""
    _stub("query_revision_xds")


@activity.defn(name="follow_upgrade")
async def follow_upgrade(request: FollowInput) -> FollowResult:
    """Wait for an upgrade the fleet did not start to end (``activities/fleet.py``)."""
    _stub("follow_upgrade")


# Notifications (async; notify.py) ---------------------------------------------------------


@activity.defn(name="notify")
async def notify(request: NotifyInput) -> NotifyResult:
    """POST one notification to a receiver whose webhook URL the worker reads (never in history)."""
    _stub("notify")
