"""``UpgradeSpec``: the single input of the ``IstioCanaryUpgrade`` workflow.

One JSON document, so the Temporal Web UI's Start Workflow form, the CLI and release tooling
all start upgrades the same way. Every field rejects unknown keys; every error names the field
and says how to fix it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from istio_upgrade.istio.naming import is_dns1123_label, parse_version, revision_for_version
from istio_upgrade.models.gate import GateSpec, check_prometheus_url
from istio_upgrade.models.selector import parse_selector


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def check_dns1123(value: str, field: str) -> str:
    """``value`` when it is a DNS-1123 label, else a ValueError naming ``field``."""
    if not is_dns1123_label(value):
        raise ValueError(
            f"{field} {value!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


class ClusterRef(_Strict):
    """Which cluster to upgrade and where its mesh metrics live."""

    name: str
    """Short cluster name (DNS-1123 label); part of the workflow id."""
    context: str | None = None
    """kubeconfig context the worker uses for this cluster; None = the current context."""
    prometheus_url: str | None = None
    """Prometheus scraping this cluster's mesh; overrides ``gate.prometheus_url`` when set."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "cluster.name")

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_prometheus_url(value, "cluster.prometheus_url")


class TargetSpec(_Strict):
    """The Istio version to install next to the running one."""

    version: str
    """Istio version, e.g. ``1.24.2``."""
    revision: str | None = None
    """Revision name; derived from the version when omitted (``1.24.2`` → ``1-24-2``)."""
    hub: str = "docker.io/istio"
    """Image registry of the pilot and proxy images."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            parse_version(value)
        except ValueError:
            raise ValueError(
                f"target.version {value!r} is not an Istio version; write it like 1.24.2"
            ) from None
        return value.strip()

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value == "default":
            raise ValueError(
                "target.revision 'default' is reserved for the default tag; "
                "omit the field to use the version's revision name"
            )
        return check_dns1123(value, "target.revision")

    @model_validator(mode="after")
    def _derive(self) -> TargetSpec:
        if self.revision is None:
            self.revision = revision_for_version(self.version)
        return self

    @property
    def revision_name(self) -> str:
        """The revision, always set after validation."""
        assert self.revision is not None
        return self.revision


class BundleConfigMap(_Strict):
    """A ConfigMap key holding the rendered revision bundle (multi-document YAML)."""

    namespace: str
    name: str
    key: str = "bundle.yaml"


MAX_INLINE_BUNDLE = 256 * 1024
"""Bytes of ``bundle_yaml``: it travels in the workflow input and activity payloads."""


class BundleSource(_Strict):
    """Where a rendered bundle (multi-document YAML) comes from: at most one of these."""

    bundle_path: str | None = None
    """Path of a rendered bundle on the worker's filesystem."""
    bundle_configmap: BundleConfigMap | None = None
    """ConfigMap in the cluster holding the rendered bundle."""
    bundle_yaml: str | None = None
    """The rendered bundle inline (multi-document YAML)."""

    def sources_given(self) -> list[str]:
        """The source fields that are set."""
        return [
            name
            for name in ("bundle_path", "bundle_configmap", "bundle_yaml")
            if getattr(self, name) is not None
        ]

    @field_validator("bundle_yaml")
    @classmethod
    def _inline_size(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_INLINE_BUNDLE:
            raise ValueError(
                f"is {len(value) // 1024} KiB; an inline bundle is stored in the workflow's "
                f"history and may be at most {MAX_INLINE_BUNDLE // 1024} KiB: use bundle_path "
                "or bundle_configmap (Istio's CRDs alone are about 1 MB)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BundleSource:
        given = self.sources_given()
        if len(given) > 1:
            raise ValueError(
                f"{self._field_name()}: set only one of bundle_path, bundle_configmap, "
                f"bundle_yaml (got {', '.join(given)})"
            )
        return self

    def _field_name(self) -> str:
        return "bundle"


class InstallerSpec(BundleSource):
    """How the target revision's control plane is installed and removed.

    Name the rendered revision (``helm template istiod istio/istiod -n istio-system
    --set revision=<rev> --version <version>``) in one of ``bundle_path``, ``bundle_configmap``
    and ``bundle_yaml``. Only that revision's objects may be in it: CRDs go to ``crds``,
    gateways migrate with the batches. Without a bundle, the reduced built-in rendering is
    applied (kept for upgrades started before bundles were required; new upgrades are refused).
    """

    strategy: Literal["manifests"] = "manifests"
    """``manifests``: server-side apply of a rendered bundle, recorded in an inventory."""

    def _field_name(self) -> str:
        return "installer"


class CRDSpec(BundleSource):
    """The base chart's CRDs, applied server-side before the revision is installed.

    Upstream upgrades CRDs first (``helm upgrade istio-base istio/base``, or
    ``helm template istio-base istio/base --include-crds``); a CRD is never deleted by a
    rollback, since deleting one deletes every Istio resource of its kind. Only
    CustomResourceDefinitions of Istio's API groups may be in the bundle.
    """

    def _field_name(self) -> str:
        return "crds"


class MigrationSpec(_Strict):
    """Which namespaces move to the new revision, and in which batches."""

    selector: str = ""
    """Label selector of candidate namespaces (``kubectl -l`` syntax); empty = all namespaces."""
    include: list[str] = Field(default_factory=list)
    """Namespaces added to the selection by name."""
    exclude: list[str] = Field(default_factory=list)
    """Namespaces removed from the selection by name (wins over ``include``)."""
    batches: list[list[str]] | None = None
    """Explicit batches, in order; every namespace must be selected. None = automatic batches."""
    canary: list[str] = Field(default_factory=list)
    """Automatic batches: these namespaces form the first batch."""
    first_batch_size: int = Field(1, ge=1)
    """Automatic batches without ``canary``: size of the first batch."""
    growth_factor: float = Field(2.0, ge=1.0)
    """Automatic batches: each batch is this many times larger than the previous one."""
    max_batch_size: int = Field(10, ge=1)
    """Automatic batches: upper bound of a batch's size."""
    max_concurrent_restarts: int = Field(5, ge=1)
    """Workloads restarted at the same time within a batch."""
    gateways_last: bool = True
    """Namespaces running injected gateways migrate in a final batch of their own."""
    unmanaged_pods: Literal["fail", "warn"] = "warn"
    """Pods owned by controllers this tool cannot restart (Argo Rollouts, operators):
    ``warn`` leaves them out of verification with a named warning (their owners restart
    them); ``fail`` treats them as stragglers that roll the batch back."""
    pin_revision_labels: bool = False
    """Leave migrated namespaces on ``istio.io/rev=<new revision>`` after promote. By default
    each gets its own label form back once the tag that served it points at the new revision
    (``istio-injection=enabled``, ``istio.io/rev=<tag>``): no restart, the same revision, and
    labels a GitOps repository still agrees with. Namespaces pinned to the old revision stay
    pinned, to the new one."""
    rollout_timeout_seconds: float = Field(600.0, gt=0)
    """How long a batch's restarts may take before it counts as stalled."""
    max_batches_per_run: int = Field(0, ge=0)
    """Continue the workflow as new after this many batches, keeping each run's history short;
    0 = when Temporal suggests it (history size). The workflow id stays the same."""

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        try:
            parse_selector(value)
        except ValueError as error:
            raise ValueError(f"migration.selector: {error}; use kubectl -l syntax") from None
        return value

    @field_validator("include", "exclude", "canary")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_dns1123(name, "namespace")
        return value

    @model_validator(mode="after")
    def _batches(self) -> MigrationSpec:
        if self.batches is None:
            return self
        if self.canary:
            raise ValueError(
                "migration: canary applies to automatic batches only; "
                "put the canary namespaces in the first of migration.batches instead"
            )
        seen: set[str] = set()
        for index, batch in enumerate(self.batches):
            if not batch:
                raise ValueError(f"migration.batches[{index}] is empty; remove it")
            for name in batch:
                check_dns1123(name, f"migration.batches[{index}] namespace")
                if name in seen:
                    raise ValueError(
                        f"migration.batches[{index}]: namespace {name!r} is already in an "
                        "earlier batch; list each namespace once"
                    )
                seen.add(name)
        return self


class ApprovalSpec(_Strict):
    """Where the upgrade waits for an operator's ``approve``."""

    before_first_batch: bool = False
    """After the new revision is Ready, before any namespace moves."""
    between_batches: bool = False
    """After each batch passes its gate, before the next one starts."""
    before_promote: bool = False
    """After the last batch, before the revision tags move."""


class PromoteSpec(_Strict):
    """Revision tags moved to the new revision once every batch passed."""

    tags: list[str] = Field(default_factory=lambda: ["default"])
    """Tags to move; tags pointing at the source revision are added when ``follow_source_tags``."""
    follow_source_tags: bool = True
    """Also move every tag that points at the source revision."""

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            check_dns1123(tag, "promote.tags entry")
        return value


class CleanupSpec(_Strict):
    """Removal of the old revision after promotion."""

    grace_seconds: float = Field(60.0, ge=0)
    """Wait after the tags move, so late proxies reconnect, before checking the old revision."""
    keep_old_revision: bool = False
    """Leave the old control plane installed."""


class RollbackSpec(_Strict):
    """What a rollback leaves behind."""

    keep_new_revision: bool = False
    """Keep the new control plane installed after rolling every namespace back."""


class UpgradeSpec(_Strict):
    """Everything one canary upgrade of one cluster needs: the workflow's only argument."""

    cluster: ClusterRef
    target: TargetSpec
    source_revision: str | None = None
    """Revision upgraded from; discovered (the one most namespaces use) when omitted."""
    installer: InstallerSpec = Field(default_factory=InstallerSpec)
    crds: CRDSpec | None = None
    """Apply the target's CRDs as their own step before installing; None leaves them be."""
    migration: MigrationSpec = Field(default_factory=MigrationSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    approvals: ApprovalSpec = Field(default_factory=ApprovalSpec)
    promote: PromoteSpec = Field(default_factory=PromoteSpec)
    cleanup: CleanupSpec = Field(default_factory=CleanupSpec)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    force: bool = False
    """Allow a jump of more than two minor versions, or a downgrade."""
    dry_run: bool = False
    """Discover, plan and precheck only: nothing is written to the cluster."""

    @field_validator("source_revision")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else check_dns1123(value, "source_revision")

    @model_validator(mode="after")
    def _distinct(self) -> UpgradeSpec:
        if self.source_revision is not None and self.source_revision == self.target.revision:
            raise ValueError(
                f"source_revision and target.revision are both {self.source_revision!r}; "
                "the target must be a new revision"
            )
        return self

    @property
    def prometheus_url(self) -> str:
        """Prometheus the gate asks: ``cluster.prometheus_url``, else ``gate.prometheus_url``."""
        return self.cluster.prometheus_url or self.gate.prometheus_url

    @property
    def target_revision(self) -> str:
        return self.target.revision_name


def workflow_id_for(spec: UpgradeSpec) -> str:
    """The workflow id of an upgrade: ``istio-upgrade.<cluster>.<revision>``.

    A second trigger of the same upgrade attaches to the running one instead of starting a twin.
    Cluster and revision are DNS-1123 labels (no dots), so the id is unambiguous, and it holds
    only URL-safe characters: Temporal's HTTP API takes the workflow id as a URL path segment
    and decodes ``%2F`` before routing, so an id containing ``/`` could not be started,
    signalled or queried over HTTP.
    """
    return f"istio-upgrade.{spec.cluster.name}.{spec.target_revision}"
