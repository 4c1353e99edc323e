"""``UpgradeSpec``: the single input of the ``IstioCanaryUpgrade`` workflow.

One JSON document, so the Temporal Web UI's Start Workflow form, the CLI and release tooling
all start upgrades the same way. Every field rejects unknown keys; every error names the field
and says how to fix it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from istio_upgrade.istio.naming import parse_version, revision_for_version
from istio_upgrade.models.gate import GateSpec, check_prometheus_url
from istio_upgrade.models.selector import parse_selector
from istio_upgrade.models.slo import explain, refusal
from istio_upgrade.models.windows import MaintenanceWindows

# -- Bounds ---------------------------------------------------------------------------------

MAX_SECONDS = 7 * 24 * 3600
"""Every duration of the spec is at most a week (as ``extend_soak`` is): longer is a typo,
and an infinite or 1e308-second timer cannot even be scheduled."""
MAX_LISTED_NAMESPACES = 5_000
"""Namespaces a spec may list by name (``include``, ``exclude``, ``canary``, ``batches``
together). The spec is the workflow's input, kept in its history and handed to every
continued run: 5,000 names of up to 63 characters are about 330 KB, below the 512 KB at which
Temporal warns. Larger selections are made with ``migration.selector``."""
MAX_BATCH_NAMESPACES = 5_000
"""Namespaces in one batch (``first_batch_size``, ``max_batch_size``, an explicit batch)."""
MAX_GROWTH_FACTOR = 100.0
MAX_CONCURRENT_RESTARTS = 200
"""Restarts in flight at once: each is a mutating request, and 200 is the API server's default
``--max-mutating-requests-inflight``."""
MAX_TAGS = 100
MAX_SLOS = 20
"""SLOs per gate: each costs two PromQL queries per evaluation."""
MAX_QUERY_TIMEOUT = 300.0
MAX_REVISION = 56
"""A revision's Service is ``istiod-<revision>`` and a Service name is a DNS-1035 label of at
most 63 characters (``manifests/charts/istio-control/istio-discovery/templates/service.yaml``),
so a revision has at most 63 - 7 = 56."""
MAX_TAG = 43
"""A tag's Service is ``istiod-revision-tag-<tag>`` (``templates/revision-tags-svc.yaml``):
63 - 20 = 43 characters."""
MAX_REPORTED = 10
"""Bad entries of one list reported by name; the rest are counted."""

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# An image registry and repository, as the distribution reference grammar allows them:
# host[:port] then lowercase path components (docker.io/istio, gcr.io/istio-release,
# localhost:5000/mirror/istio).
_HUB = re.compile(
    r"[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?"
    r"(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
)


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        allow_inf_nan=False,
        # Errors end up in the workflow's failure (the Web UI) and in logs: never echo the
        # input, which may be a URL with credentials or a 256 KiB bundle.
        hide_input_in_errors=True,
    )


def _is_dns1123(value: str) -> bool:
    # fullmatch: is_dns1123_label's "$" also accepts a trailing newline.
    return _DNS1123_LABEL.fullmatch(value) is not None


def check_dns1123(value: str, field: str, max_length: int = 63, why: str = "") -> str:
    """``value`` when it is a DNS-1123 label of at most ``max_length``, else a ValueError
    naming ``field`` (``why`` says where the shorter limit comes from)."""
    if not _is_dns1123(value):
        raise ValueError(
            f"{field} {value!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    if len(value) > max_length:
        raise ValueError(f"{field} {value!r} is {len(value)} characters; at most {max_length}{why}")
    return value


def check_revision(value: str, field: str) -> str:
    """A revision name: DNS-1123, and short enough for its Service ``istiod-<revision>``."""
    check_dns1123(value, field)
    if len(value) > MAX_REVISION:
        raise ValueError(
            f"{field} is {len(value)} characters; at most {MAX_REVISION}: the revision's "
            f"Service istiod-<revision> must be a DNS label of at most 63 characters"
        )
    return value


def _names_problems(
    values: Sequence[str], max_length: int, max_count: int | None, why: str, instead: str
) -> Iterator[tuple[str, str, Any]]:
    if max_count is not None and len(values) > max_count:
        yield ("", f"lists {len(values):,} entries; at most {max_count:,}{instead}", None)
        return
    bad = 0
    for index, value in enumerate(values):
        try:
            check_dns1123(value, "", max_length, why)
        except ValueError as error:
            bad += 1
            if bad <= MAX_REPORTED:
                yield (f"[{index}]", str(error).lstrip(), value)
    if bad > MAX_REPORTED:
        yield ("", f"and {bad - MAX_REPORTED} more entries are not DNS-1123 labels", None)


def check_names(
    values: list[str],
    field: str,
    *,
    max_length: int = 63,
    max_count: int | None = None,
    why: str = "",
    instead: str = "",
) -> list[str]:
    """``values`` when each is a DNS-1123 label; else a ValidationError per bad entry,
    located at its index (``migration.include[3]``).

    Args:
        values: The names.
        field: The list's path, for the error's title.
        max_length: Longest name allowed.
        max_count: Most names allowed.
        why: Where ``max_length`` comes from, appended to its message.
        instead: What to do rather than list more than ``max_count``.
    """
    problems = list(_names_problems(values, max_length, max_count, why, instead))
    if problems:
        raise ValidationError.from_exception_data(
            field,
            [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "{message}", {"message": message}),
                    loc=(int(loc[1:-1]),) if loc.startswith("[") else (),
                    input=value,
                )
                for loc, message, value in problems
            ],
        )
    return values


def check_text(value: str, field: str, max_length: int = 1024) -> str:
    """A free-form name (a kubeconfig context): no control or invisible characters."""
    odd = [c for c in value if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    if odd:
        shown = ", ".join(f"U+{ord(c):04X}" for c in odd[:3])
        raise ValueError(
            f"{field} holds control characters or invisible formatting ({shown}); write the "
            "name exactly as kubectl config get-contexts shows it"
        )
    if not value.strip() or value != value.strip():
        raise ValueError(f"{field} is empty or has leading/trailing spaces; remove them")
    if len(value) > max_length:
        raise ValueError(f"{field} is {len(value)} characters; at most {max_length}")
    return value


def check_prometheus_base_url(value: str, field: str) -> str:
    """An http(s) base URL of Prometheus the worker can use, without credentials.

    Checked so that no message echoes a secret: credentials and query strings are refused
    before any message that shows the URL.
    """
    if any(c.isspace() or unicodedata.category(c) in {"Cc", "Cf"} for c in value):
        raise ValueError(
            f"{field} contains whitespace or control characters; write the URL on one line "
            "without spaces"
        )
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ValueError(
            f"{field} must not contain credentials (user:password@ or token@): the spec is "
            "stored in clear in Temporal's history; give the worker a Prometheus it reaches "
            "without them (e.g. through an authenticating proxy next to the worker)"
        )
    if parts.query:
        raise ValueError(
            f"{field} has a query string (?…); give the base URL only (the spec is stored in "
            "clear in Temporal's history: never put a token in it)"
        )
    if parts.fragment:
        raise ValueError(f"{field} has a fragment (#…); give the base URL only")
    check_prometheus_url(value, field)  # the scheme
    if not parts.hostname:
        raise ValueError(
            f"{field} names no host; write it like http://prometheus.istio-system.svc:9090"
        )
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when it is read)
    except ValueError:
        raise ValueError(f"{field} has an invalid port; use a number from 1 to 65535") from None
    if "/api/v1" in parts.path:
        raise ValueError(
            f"{field} points at an API path; give the base URL the API lives under (e.g. "
            "http://prometheus.istio-system.svc:9090, or …/prometheus behind a path prefix)"
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
    task_queue: str | None = None
    """Temporal task queue of this cluster's activities, served by a worker running next to
    the cluster (``istio-upgrade worker --cluster <name>`` polls
    ``istio-upgrade.cluster.<name>``, see ``cluster_task_queue``); None = the workflow's own
    queue. The workflows themselves always run on the main queue."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "cluster.name")

    @field_validator("context")
    @classmethod
    def _context(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "cluster.context")

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_prometheus_base_url(value, "cluster.prometheus_url")

    @field_validator("task_queue")
    @classmethod
    def _task_queue(cls, value: str | None) -> str | None:
        return None if value is None else check_task_queue(value, "cluster.task_queue")


CLUSTER_TASK_QUEUE_PREFIX = "istio-upgrade.cluster."
MAX_TASK_QUEUE = 200


def cluster_task_queue(cluster: str) -> str:
    """The task queue a worker started with ``--cluster <cluster>`` polls:
    ``istio-upgrade.cluster.<cluster>`` (set it as that cluster's ``task_queue``)."""
    return f"{CLUSTER_TASK_QUEUE_PREFIX}{cluster}"


def check_task_queue(value: str, field: str) -> str:
    """A Temporal task queue name: printable, no spaces, not reserved, at most 200 characters."""
    if not value or any(c.isspace() or unicodedata.category(c)[0] in {"C", "Z"} for c in value):
        raise ValueError(
            f"{field} must be a task queue name without spaces or control characters, e.g. "
            "istio-upgrade.cluster.prod-eu-1 (what `istio-upgrade worker --cluster prod-eu-1` "
            "polls)"
        )
    if value.startswith("/_sys/") or value.startswith("__temporal"):
        raise ValueError(f"{field} {value!r} is reserved by Temporal; choose another name")
    if len(value) > MAX_TASK_QUEUE:
        raise ValueError(f"{field} is {len(value)} characters; at most {MAX_TASK_QUEUE}")
    return value


class TargetSpec(_Strict):
    """The Istio version to install next to the running one."""

    version: str
    """Istio version, e.g. ``1.31.0``."""
    revision: str | None = None
    """Revision name; derived from the version when omitted (``1.31.0`` → ``1-31-0``)."""
    hub: str = "docker.io/istio"
    """Image registry of the pilot and proxy images."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            # \d also matches the digits of other scripts (fullwidth, Arabic-Indic): only ASCII.
            if not value.isascii() or len(value.strip()) > 128:
                raise ValueError(value)
            parse_version(value)
        except ValueError:
            raise ValueError(
                f"target.version {value!r} is not an Istio version; write it like 1.31.0"
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
        return check_revision(value, "target.revision")

    @field_validator("hub")
    @classmethod
    def _hub(cls, value: str) -> str:
        if len(value) > 255 or not value.isascii() or not _HUB.fullmatch(value):
            raise ValueError(
                f"target.hub {value!r} is not an image registry and repository; write it like "
                "docker.io/istio or gcr.io/istio-release (ASCII, lowercase path, no spaces)"
            )
        return value

    @model_validator(mode="after")
    def _derive(self) -> TargetSpec:
        if self.revision is None:
            # revision_for_version's rule, checked here to say which field to set.
            derived = self.version.strip().replace(".", "-").lower()
            if not _is_dns1123(derived) or len(derived) > MAX_REVISION:
                raise ValueError(
                    f"version {self.version!r} gives the revision name {derived!r}, which is not "
                    f"a DNS-1123 label of at most {MAX_REVISION} characters; set "
                    "target.revision to a shorter name, e.g. 1-31-0"
                )
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

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_dns1123(value, "namespace")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
            raise ValueError(
                f"name {value!r} is not a ConfigMap name: a DNS-1123 subdomain of at most 253 "
                "lowercase letters, digits, '-' and '.'"
            )
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if len(value) > 253 or value in {".", ".."} or not _CONFIGMAP_KEY.fullmatch(value):
            raise ValueError(
                f"key {value!r} is not a ConfigMap key: at most 253 letters, digits, '-', '_' "
                "and '.' (e.g. bundle.yaml)"
            )
        return value


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

    @field_validator("bundle_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(unicodedata.category(c) in {"Cc", "Cf"} for c in value):
            raise ValueError(
                "bundle_path holds control characters; write the path of the rendered bundle "
                "on the worker, e.g. /bundles/istiod-1-31-0.yaml"
            )
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError(
                "bundle_path may not contain '..': name the bundle's own path on the worker, "
                "e.g. /bundles/istiod-1-31-0.yaml"
            )
        if not value.strip() or len(value) > 4096:
            raise ValueError("bundle_path must be a path of 1 to 4096 characters")
        return value

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
    first_batch_size: int = Field(1, ge=1, le=MAX_BATCH_NAMESPACES)
    """Automatic batches without ``canary``: size of the first batch."""
    growth_factor: float = Field(2.0, ge=1.0, le=MAX_GROWTH_FACTOR)
    """Automatic batches: each batch is this many times larger than the previous one."""
    max_batch_size: int = Field(10, ge=1, le=MAX_BATCH_NAMESPACES)
    """Automatic batches: upper bound of a batch's size."""
    max_concurrent_restarts: int = Field(5, ge=1, le=MAX_CONCURRENT_RESTARTS)
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
    rollout_timeout_seconds: float = Field(600.0, gt=0, le=MAX_SECONDS)
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
    def _names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return check_names(
            value,
            f"migration.{info.field_name}",
            max_count=MAX_LISTED_NAMESPACES,
            instead=(
                " (the spec is stored in the workflow's history): choose namespaces with "
                "migration.selector instead"
            ),
        )

    @field_validator("batches")
    @classmethod
    def _batch_sizes(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        if value is None:
            return None
        if len(value) > MAX_LISTED_NAMESPACES:
            raise ValueError(
                f"migration.batches lists {len(value):,} batches; a spec names at most "
                f"{MAX_LISTED_NAMESPACES:,} namespaces: choose them with migration.selector and "
                "let automatic batches (first_batch_size, growth_factor, max_batch_size) split them"
            )
        for index, batch in enumerate(value):
            if len(batch) > MAX_BATCH_NAMESPACES:
                raise ValidationError.from_exception_data(
                    "migration.batches",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "value_error",
                                "{message}",
                                {
                                    "message": f"holds {len(batch):,} namespaces; a batch holds "
                                    f"at most {MAX_BATCH_NAMESPACES:,}: choose namespaces with "
                                    "migration.selector and let automatic batches split them"
                                },
                            ),
                            loc=(index,),
                            input=None,
                        )
                    ],
                )
        return value

    @model_validator(mode="after")
    def _listed(self) -> MigrationSpec:
        listed = len(self.include) + len(self.exclude) + len(self.canary)
        listed += sum(len(b) for b in self.batches or [])
        if listed > MAX_LISTED_NAMESPACES:
            raise ValueError(
                f"migration lists {listed:,} namespaces by name; at most "
                f"{MAX_LISTED_NAMESPACES:,} (the spec is stored in the workflow's history): "
                "choose them with migration.selector instead"
            )
        return self

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
        # istiod-revision-tag-<tag> is the tag's Service (DNS-1035 label, 63 characters).
        return check_names(
            value,
            "promote.tags",
            max_length=MAX_TAG,
            max_count=MAX_TAGS,
            why=": the tag's Service istiod-revision-tag-<tag> must be a DNS label of at most 63",
        )


class CleanupSpec(_Strict):
    """Removal of the old revision after promotion."""

    grace_seconds: float = Field(60.0, ge=0, le=MAX_SECONDS)
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
    windows: MaintenanceWindows | None = None
    """Maintenance windows: the install, each batch and the tag moves start only inside
    them (a batch in flight when a window closes finishes its soak and gate; a rollback
    never waits). None: any time."""

    @field_validator("source_revision")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else check_revision(value, "source_revision")

    @model_validator(mode="wrap")
    @classmethod
    def _explained(cls, data: Any, handler: ModelWrapValidatorHandler[UpgradeSpec]) -> UpgradeSpec:
        """Every error located by its JSON path and saying what to do (see ``slo.explain``),
        then the bounds that span models (the gate's, which ``GateSpec`` leaves open)."""
        try:
            spec = handler(data)
        except ValidationError as error:
            raise explain(error, cls, hint="see `istio-upgrade schema`") from None
        problems = list(_gate_problems(spec.gate))
        if problems:
            raise refusal(cls, problems)
        return spec

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


_GATE_DURATIONS = (
    "warmup_seconds",
    "soak_seconds",
    "max_soak_seconds",
    "interval_seconds",
    "short_window_seconds",
)


def _gate_problems(gate: GateSpec) -> Iterator[tuple[str, str, Any]]:
    """What ``GateSpec`` accepts but an upgrade cannot use: unbounded timers and queries, a
    gate that could never confirm a failure, more SLOs than the gate can afford to ask."""
    for name in _GATE_DURATIONS:
        value = getattr(gate, name)
        if not math.isfinite(value) or value > MAX_SECONDS:
            yield (
                f"gate.{name}",
                f"{value:g} seconds is too long: a duration is at most {MAX_SECONDS} (7 days)",
                value,
            )
    if math.isfinite(gate.interval_seconds) and gate.interval_seconds < 1:
        yield (
            "gate.interval_seconds",
            f"{gate.interval_seconds:g} is too short: evaluate at least 1 second apart (each "
            "evaluation is an activity in the workflow's history)",
            gate.interval_seconds,
        )
    timeout = gate.query_timeout_seconds
    if not math.isfinite(timeout) or timeout > MAX_QUERY_TIMEOUT:
        yield (
            "gate.query_timeout_seconds",
            f"{timeout:g} is too long: a Prometheus query may take at most "
            f"{MAX_QUERY_TIMEOUT:g} seconds",
            timeout,
        )
    checked = {*_GATE_DURATIONS, "query_timeout_seconds"}
    for name in type(gate).model_fields:
        value = getattr(gate, name)
        if isinstance(value, float) and not math.isfinite(value) and name not in checked:
            yield (f"gate.{name}", "Input should be a finite number", value)
    # An unconfirmed failure is INCONCLUSIVE, and an INCONCLUSIVE batch stops soaking at
    # max_soak_seconds: with "proceed", a failure that needs longer to confirm rolls forward.
    # (With "rollback" or "wait_for_approval" the batch rolls back or a person decides.)
    confirming = (gate.confirmations - 1) * gate.interval_seconds
    proceeds = gate.on_inconclusive == "proceed" and gate.confirmations > 1
    if proceeds and confirming >= gate.max_soak_seconds:
        yield (
            "gate.confirmations",
            f"{gate.confirmations} consecutive failing evaluations "
            f"{gate.interval_seconds:g}s apart take {confirming:g}s after the first, but a "
            f"batch stops soaking after max_soak_seconds ({gate.max_soak_seconds:g}s) and "
            "on_inconclusive is proceed: a lasting failure would never be confirmed and the "
            "upgrade would go on instead of rolling back; lower confirmations or raise "
            "max_soak_seconds",
            gate.confirmations,
        )
    if len(gate.slos) > MAX_SLOS:
        yield (
            "gate.slos",
            f"lists {len(gate.slos)} SLOs; at most {MAX_SLOS} (each is two Prometheus queries "
            "per evaluation)",
            None,
        )
    try:
        check_prometheus_base_url(gate.prometheus_url, "gate.prometheus_url")
    except ValueError as error:
        yield ("gate.prometheus_url", str(error), None)


def workflow_id_for(spec: UpgradeSpec) -> str:
    """The workflow id of an upgrade: ``istio-upgrade.<cluster>.<revision>``.

    A second trigger of the same upgrade attaches to the running one instead of starting a twin.
    Cluster and revision are DNS-1123 labels (no dots), so the id is unambiguous, and it holds
    only URL-safe characters: Temporal's HTTP API takes the workflow id as a URL path segment
    and decodes ``%2F`` before routing, so an id containing ``/`` could not be started,
    signalled or queried over HTTP.
    """
    return f"istio-upgrade.{spec.cluster.name}.{spec.target_revision}"
