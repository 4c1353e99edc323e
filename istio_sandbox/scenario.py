"""Scenario files: the topology, Istio install, traffic and faults a sandbox starts with.

A scenario is YAML validated by the models below (unknown keys are errors). Shipped scenarios
live in ``istio_sandbox/scenarios/<name>.yaml`` and load by name.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from istio_sandbox.cluster import Cluster, Timings
from istio_sandbox.controllers.objects import template_hash
from istio_sandbox.controllers.rollouts import render_rollout_crd
from istio_sandbox.faults import Faults
from istio_sandbox.istio.ambient import render_istio_cni, render_ztunnel
from istio_sandbox.istio.charts import (
    render_crds,
    render_default_validator,
    render_istiod,
    render_tag,
)
from istio_sandbox.istio.gateway_api import (
    gateway_object,
    render_gateway_api_crds,
    render_gateway_classes,
)
from istio_sandbox.istio.names import (
    ANNOTATION_INJECT_TEMPLATES,
    DEFAULT_REVISION,
    ISTIO_NAMESPACE,
    LABEL_INJECTION,
    LABEL_POD_INJECT,
    LABEL_REV,
    is_dns1123_label,
    parse_version,
    revision_of_version,
)
from istio_sandbox.resources import by_kind
from istio_sandbox.store import AlreadyExists, Obj, clone

SCENARIO_DIR = Path(__file__).parent / "scenarios"
ROLLOUT_API_VERSION = "argoproj.io/v1alpha1"
APP_IMAGE_HUB = "docker.io/istio-upgrade-sandbox"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names each field path and the fix."""


# Label syntax as the API server validates it (apimachinery ``validation.IsQualifiedName`` and
# ``IsValidLabelValue``): a real cluster answers 422 to anything else.
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")


def _label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _LABEL_NAME.match(name)
        or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
    ):
        raise ValueError(
            f"{key!r} is not a label key: an optional DNS-subdomain prefix and '/', then at most "
            "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return key


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a label value: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (or empty)"
        )
    return value


Labels = dict[
    Annotated[str, AfterValidator(_label_key)], Annotated[str, AfterValidator(_label_value)]
]
"""Kubernetes labels, checked as the API server checks them."""


class _Strict(BaseModel):
    # Infinite or NaN rates and ratios would poison the traffic model's counters.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _dns_label(value: str, what: str) -> str:
    if not is_dns1123_label(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS-1123 label: use at most 63 lower-case letters, "
            "digits and dashes, starting and ending with a letter or digit"
        )
    return value


class RevisionSpec(_Strict):
    """An istiod revision installed and Ready when the sandbox starts."""

    version: str
    """Istio version, e.g. ``1.30.3``."""
    revision: str | None = None
    """Revision name; defaults to the version with dashes (``1-30-3``). ``""`` installs
    revisionless (``helm template istiod`` without ``--set revision``): objects without a
    suffix (``istiod``, ``istio-sidecar-injector``), revision ``default``."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_version(value)
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return value
        if value == DEFAULT_REVISION:
            raise ValueError(
                "revision 'default' is what a revisionless install is called; use revision: \"\""
            )
        return _dns_label(value, "revision")

    @property
    def revisionless(self) -> bool:
        return self.revision == ""

    @property
    def chart_revision(self) -> str:
        """``--set revision=`` for the istiod chart: ``""`` for a revisionless install."""
        return "" if self.revisionless else self.name

    @property
    def name(self) -> str:
        """The revision name actually used (``default`` for a revisionless install)."""
        if self.revision is None:
            return revision_of_version(self.version)
        return self.revision or DEFAULT_REVISION


class AmbientSpec(_Strict):
    """Istio ambient's node components: the ``ztunnel`` and ``istio-cni`` charts."""

    version: str
    """Istio version of ztunnel (``ztunnel:<v>``) and istio-cni (``install-cni:<v>``)."""
    revision: str | None = None
    """The ztunnel chart's ``revision``: ztunnel's ``CA_ADDRESS``/``XDS_ADDRESS`` name
    ``istiod-<revision>``; None = the first installed revision."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_version(value)
        return value


class WorkloadSpec(_Strict):
    """A Deployment, StatefulSet or DaemonSet, its Service and the traffic it serves."""

    name: str
    """Workload name; also its Service name and its pods' ``app`` label."""
    kind: Literal["Deployment", "StatefulSet", "DaemonSet", "Rollout"] = "Deployment"
    """``Rollout`` is an Argo Rollout (``argoproj.io/v1alpha1``): its pods belong to a
    ReplicaSet owned by the Rollout, a controller the upgrade does not know."""
    replicas: int = Field(1, ge=0, le=1000)
    """Pods wanted; ignored for a DaemonSet, which runs one pod per simulated node."""
    labels: Labels = Field(default_factory=dict)
    """Extra pod template labels (``app`` and ``version`` are always set)."""
    protocol: Literal["http", "grpc"] = "http"
    rps: float = Field(0.0, ge=0.0)
    """Requests per second the workload receives in total, split evenly across its callers
    (or all from outside the mesh when nothing calls it)."""
    error_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """Baseline share of failed requests (HTTP 503, or gRPC UNAVAILABLE on gRPC workloads)."""
    latency_ms: float = Field(20.0, gt=0.0)
    """Median request duration."""
    calls: list[str] = Field(default_factory=list)
    """Workloads this one calls: ``name`` (same namespace) or ``namespace/name``."""
    gateway: bool = False
    """An injection-based ingress gateway: pod annotation
    ``inject.istio.io/templates: gateway``."""
    helm_gateway: bool = False
    """Rendered as the ``gateway`` Helm chart renders it (``manifests/charts/gateway``): pod
    labels ``sidecar.istio.io/inject: "true"``, ``app``/``istio`` selector labels, pod
    annotation ``inject.istio.io/templates: gateway``, container ``istio-proxy`` with image
    ``auto``, a LoadBalancer Service; it opts in per pod, so its namespace needs no label."""
    revision: str | None = None
    """The gateway chart's ``revision`` value: pod label ``istio.io/rev=<revision>``, served
    by that revision's (or tag's) ``rev.object.`` webhook. Only with ``helm_gateway``."""
    host_network: bool = False
    """``spec.hostNetwork: true`` (node agents, CNI plugins): the pod uses its node's IP and
    the injector never injects it."""
    update_strategy: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    """StatefulSet/DaemonSet ``updateStrategy.type``: with ``OnDelete`` a template change only
    moves ``status.updateRevision``; pods are replaced when someone deletes them."""
    paused: bool = False
    """Deployment ``spec.paused``: template changes (a restart included) do not roll until
    it is resumed."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "workload name")

    @model_validator(mode="after")
    def _kind_options(self) -> WorkloadSpec:
        if self.update_strategy == "OnDelete" and self.kind not in ("StatefulSet", "DaemonSet"):
            raise ValueError(
                f"update_strategy OnDelete is a StatefulSet/DaemonSet strategy, not {self.kind}'s; "
                "use kind StatefulSet or DaemonSet, or update_strategy RollingUpdate"
            )
        if self.revision is not None and not self.helm_gateway:
            raise ValueError("revision is the gateway chart's value; set helm_gateway: true")
        if self.paused and self.kind not in ("Deployment", "Rollout"):
            raise ValueError(
                f"paused applies to a Deployment or Rollout, not a {self.kind}; remove paused "
                "or use kind Deployment"
            )
        return self


class PodSpec(_Strict):
    """A pod created directly, without a controller (not restartable)."""

    name: str
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    opt_out: bool = False
    """Label the pod ``sidecar.istio.io/inject: "false"`` so it is never injected."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "pod name")


class JobSpec(_Strict):
    """A batch Job whose pod runs to completion."""

    name: str
    completions: int = Field(1, ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "job name")


class GatewaySpec(_Strict):
    """A Gateway API ``Gateway`` istiod deploys: class ``istio`` (a Deployment and Service
    ``<name>-istio``) or ``istio-waypoint`` (a waypoint ``<name>``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    gateway_class: Literal["istio", "istio-waypoint"] = Field("istio", alias="class")
    rev: str | None = None
    """The Gateway's ``istio.io/rev`` label (a revision or tag); None = follow the namespace's
    ``istio.io/rev`` label, else the ``default`` tag / default revision."""
    waypoint_for: Literal["service", "workload", "all", "none"] = "service"
    """``istio.io/waypoint-for`` label of a waypoint."""
    labels: Labels = Field(default_factory=dict)
    port: int = Field(80, ge=1, le=65535)
    """The HTTP listener's port (class ``istio``)."""
    rps: float = Field(0.0, ge=0.0)
    """Requests per second entering the mesh through this gateway (class ``istio``)."""
    latency_ms: float = Field(5.0, gt=0.0)
    calls: list[str] = Field(default_factory=list)
    """Workloads the gateway routes to: ``name`` or ``namespace/name``."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "gateway name")

    @property
    def deployment_name(self) -> str:
        """What istiod names its Deployment and Service (``GetDefaultName``)."""
        return self.name if self.gateway_class == "istio-waypoint" else f"{self.name}-istio"

    def object_labels(self) -> dict[str, str]:
        labels = dict(self.labels)
        if self.rev is not None:
            labels[LABEL_REV] = self.rev
        if self.gateway_class == "istio-waypoint":
            labels.setdefault("istio.io/waypoint-for", self.waypoint_for)
        return labels

    def as_workload(self) -> WorkloadSpec:
        """The gateway as the traffic model sees it (pods found by their canonical name)."""
        return WorkloadSpec(
            name=self.deployment_name, rps=self.rps, latency_ms=self.latency_ms, calls=self.calls
        )


class NamespaceSpec(_Strict):
    """A namespace and everything in it."""

    name: str
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    workloads: list[WorkloadSpec] = Field(default_factory=list)
    pods: list[PodSpec] = Field(default_factory=list)
    jobs: list[JobSpec] = Field(default_factory=list)
    gateways: list[GatewaySpec] = Field(default_factory=list)
    """Gateway API Gateways (classes ``istio``, ``istio-waypoint``) istiod deploys here."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "namespace name")


class GenerateSpec(_Strict):
    """Many alike namespaces: ``<prefix>-0000`` … each with the same workloads."""

    prefix: str
    count: int = Field(ge=1, le=100_000)
    labels: Labels = Field(default_factory=dict)
    workloads: list[WorkloadSpec] = Field(default_factory=list)
    """Workload templates; ``calls`` name workloads of the same namespace."""
    traffic_namespaces: int | None = Field(None, ge=0)
    """Only the first N namespaces carry traffic (keeps ``/metrics`` small); None = all."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _dns_label(value, "generate prefix")

    def namespaces(self) -> Iterator[NamespaceSpec]:
        """The namespaces this entry stands for."""
        width = max(4, len(str(self.count - 1)))
        for i in range(self.count):
            quiet = self.traffic_namespaces is not None and i >= self.traffic_namespaces
            workloads = [w.model_copy(update={"rps": 0.0}) if quiet else w for w in self.workloads]
            yield NamespaceSpec(
                name=f"{self.prefix}-{i:0{width}d}", labels=dict(self.labels), workloads=workloads
            )


class Scenario(_Strict):
    """A whole sandbox: topology, Istio install, traffic and faults."""

    name: str
    """Short name, shown by the sandbox."""
    description: str = ""
    cluster_name: str = "sandbox"
    """Name of the simulated cluster (used in workflow ids and metric labels)."""
    timings: Timings = Field(default_factory=Timings)
    revisions: list[RevisionSpec] = Field(min_length=1)
    """Control-plane revisions installed at start."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Revision tags at start: tag name → revision name."""
    istio_crds: bool = True
    """Install the base chart's Istio CRDs (VirtualService, DestinationRule, Gateway, Sidecar,
    ServiceEntry, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry)."""
    ambient: AmbientSpec | None = None
    """Install ztunnel and istio-cni (DaemonSets in istio-system): namespaces labelled
    ``istio.io/dataplane-mode=ambient`` get their pods enrolled instead of sidecars."""
    gateway_api: bool = False
    """Install the Gateway API CRDs (standard channel, ``bundle-version`` v1.2.1); implied by
    any ``gateways`` entry. istiod creates the GatewayClasses ``istio`` and
    ``istio-waypoint`` and deploys Gateways of those classes."""
    argo_rollouts: bool = False
    """Install Argo Rollouts' CRD ``rollouts.argoproj.io`` (and run its controller); implied
    by any ``kind: Rollout`` workload."""
    istio_resources: list[dict[str, Any]] = Field(default_factory=list)
    """Istio custom resources (full objects) created after the workloads, through admission."""
    default_validator: str | None = None
    """The base chart's ``istiod-default-validator`` (``defaultRevision``): the revision whose
    istiod it calls (``default`` for a revisionless install); None = not installed."""
    namespaces: list[NamespaceSpec] = Field(default_factory=list)
    generate: list[GenerateSpec] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)
    rbac: bool = False
    """Enforce RBAC: requests with bearer tokens are authorized against the cluster's Roles,
    ClusterRoles and bindings (``system:masters``, hence token-less kubeconfigs, may do
    everything); off, every caller may do everything."""

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        return _dns_label(value, "cluster_name")

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        problems = list(_reference_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def all_namespaces(self) -> Iterator[tuple[str, NamespaceSpec]]:
        """Every namespace with the field path it comes from."""
        for i, ns in enumerate(self.namespaces):
            yield f"namespaces[{i}]", ns
        for i, gen in enumerate(self.generate):
            for ns in gen.namespaces():
                yield f"generate[{i}]", ns

    def revision_names(self) -> list[str]:
        return [r.name for r in self.revisions]

    def needs_gateway_api(self) -> bool:
        return self.gateway_api or any(ns.gateways for _, ns in self.all_namespaces())

    def needs_rollouts_crd(self) -> bool:
        return self.argo_rollouts or any(
            w.kind == "Rollout" for _, ns in self.all_namespaces() for w in ns.workloads
        )


def _reference_problems(scenario: Scenario) -> Iterator[str]:
    revisions = scenario.revision_names()
    seen_rev: set[str] = set()
    for i, name in enumerate(revisions):
        if name in seen_rev:
            yield f"revisions[{i}]: revision {name!r} is listed twice; remove the duplicate"
        seen_rev.add(name)
    for tag, target in scenario.tags.items():
        if not is_dns1123_label(tag):
            yield f"tags.{tag}: tag name is not a DNS-1123 label; use lower-case letters and dashes"
        if target not in seen_rev:
            yield (
                f"tags.{tag}: revision {target!r} is not installed; use one of "
                f"{sorted(seen_rev)} or add it under revisions"
            )
        if tag in seen_rev:
            yield f"tags.{tag}: a tag cannot share its name with a revision; rename the tag"
    selectable = seen_rev | set(scenario.tags)
    served = {
        (f"{c['spec']['group']}/{v['name']}", c["spec"]["names"]["kind"])
        for c in render_crds()
        for v in c["spec"]["versions"]
    }
    for i, res in enumerate(scenario.istio_resources):
        raw_meta = res.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        key = (res.get("apiVersion"), res.get("kind"))
        if not scenario.istio_crds or key not in served:
            yield (
                f"istio_resources[{i}]: {key[0]} {key[1]} is not an Istio CRD the sandbox "
                f"installs; use one of {sorted(k for _, k in served)} with istio_crds: true"
            )
        if not meta.get("name") or not meta.get("namespace"):
            yield f"istio_resources[{i}].metadata: name and namespace are required"
    if (
        scenario.ambient is not None
        and scenario.ambient.revision is not None
        and scenario.ambient.revision not in seen_rev
    ):
        yield (
            f"ambient.revision: revision {scenario.ambient.revision!r} is not installed; use one "
            f"of {sorted(seen_rev)}"
        )
    if scenario.default_validator is not None and scenario.default_validator not in seen_rev:
        yield (
            f"default_validator: revision {scenario.default_validator!r} is not installed; use "
            f"one of {sorted(seen_rev)}"
        )

    workloads: dict[str, set[str]] = {}
    where: dict[str, str] = {}
    for path, ns in scenario.all_namespaces():
        if ns.name in where:
            yield (
                f"{path}: namespace {ns.name!r} already defined at {where[ns.name]}; "
                "namespace names must be unique"
            )
            continue
        if ns.name == ISTIO_NAMESPACE:
            yield f"{path}: {ISTIO_NAMESPACE} is created by the sandbox; remove it"
        where[ns.name] = path
        names = [w.name for w in ns.workloads] + [g.deployment_name for g in ns.gateways]
        workloads[ns.name] = set(names)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            yield f"{path}.workloads: {dupes} defined twice in namespace {ns.name!r}; rename one"
        rev_label = ns.labels.get(LABEL_REV)
        if rev_label is not None and rev_label not in selectable:
            yield (
                f"{path}.labels.{LABEL_REV}: {rev_label!r} is neither an installed revision nor "
                f"a tag; use one of {sorted(selectable)} or add it under revisions or tags"
            )
        for j, g in enumerate(ns.gateways):
            if g.rev is not None and g.rev not in selectable:
                yield (
                    f"{path}.gateways[{j}].rev: {g.rev!r} is neither an installed revision nor "
                    f"a tag; use one of {sorted(selectable)}"
                )
        for j, w in enumerate(ns.workloads):
            if w.revision is not None and w.revision not in selectable:
                yield (
                    f"{path}.workloads[{j}].revision: {w.revision!r} is neither an installed "
                    f"revision nor a tag; use one of {sorted(selectable)}"
                )
        inj = ns.labels.get(LABEL_INJECTION)
        if inj is not None and inj not in ("enabled", "disabled"):
            yield f"{path}.labels.{LABEL_INJECTION}: {inj!r} must be 'enabled' or 'disabled'"
        if inj == "enabled" and DEFAULT_REVISION not in selectable:
            yield (
                f"{path}.labels.{LABEL_INJECTION}: istio-injection=enabled is served by the "
                "'default' tag or a revisionless install; add tags: {default: <revision>} or "
                'a revision with revision: ""'
            )

    checked: set[str] = set()
    for path, ns in scenario.all_namespaces():
        # Generated namespaces are alike: checking the first of each entry is enough.
        if where.get(ns.name) != path or (path.startswith("generate") and path in checked):
            continue
        checked.add(path)
        callers = [(f"workloads[{j}]", w.calls) for j, w in enumerate(ns.workloads)]
        callers += [(f"gateways[{j}]", g.calls) for j, g in enumerate(ns.gateways)]
        for where_, calls in callers:
            for k, edge in enumerate(calls):
                target_ns, _, target = edge.rpartition("/")
                target_ns = target_ns or ns.name
                if target not in workloads.get(target_ns, set()):
                    yield (
                        f"{path}.{where_}.calls[{k}]: {edge!r} names no workload; "
                        f"define workload {target!r} in namespace {target_ns!r} or fix the edge"
                    )


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold, through Optional, unions, lists and dict values."""
    args = get_args(annotation)
    if get_origin(annotation) is dict:
        args = args[-1:]
    if args:
        return [m for arg in args for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The field names (aliases where set) of the models at ``loc`` in a scenario."""
    models: list[type[BaseModel]] = [Scenario]
    for part in loc:
        if isinstance(part, int):
            continue
        found = [
            info
            for m in models
            for name, info in m.model_fields.items()
            if part in (name, info.alias)
        ]
        models = [m for info in found for m in _models_in(info.annotation)]
    return sorted({info.alias or n for m in models for n, info in m.model_fields.items()})


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"scenario {source} is invalid:"]
    for e in err.errors():
        where = tuple(e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(where[-1]), _fields_at(where[:-1]), n=1)
            msg = "unknown field; remove it or check its spelling" + (
                f" (did you mean {close[0]!r}?)" if close else ""
            )
        elif e["type"] == "missing":
            msg = "required field is missing; add it"
        elif e["type"] == "value_error" and msg.split(" ", 1)[0] in _fields_at(where):
            # A check of several fields whose message starts with one ("paused applies to …")
            # is located at that field.
            where = (*where, msg.split(" ", 1)[0])
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in where)
        loc = loc.replace(".[", "[")
        for part in msg.split("\n"):
            lines.append(f"  {loc}: {part}" if loc else f"  {part}")
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "<inline>") -> Scenario:
    """Validate parsed YAML.

    Raises:
        ScenarioError: Listing every problem with its field path and fix.
    """
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {source} is invalid: the document must be a mapping")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format_validation_error(source, err)) from None


def shipped_scenarios() -> list[str]:
    """Names of the scenarios that ship with the package."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _scenario_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") or "/" in text or path.exists()):
        path = SCENARIO_DIR / f"{text}.yaml"
        if not path.exists():
            raise ScenarioError(
                f"no scenario named {text!r}; use one of {shipped_scenarios()} or a path to a "
                "YAML file"
            )
    if not path.is_file():
        raise ScenarioError(f"scenario file {path} does not exist")
    return path


def _read_raw(name_or_path: str | Path, chain: tuple[str, ...] = ()) -> tuple[Any, str]:
    """The YAML of a scenario with its ``extends`` base merged in (top-level keys override)."""
    path = _scenario_path(name_or_path)
    source = str(path)
    if source in chain:
        raise ScenarioError(f"scenario {source}: extends loops through {' -> '.join(chain)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ScenarioError(f"scenario {source} is not valid YAML: {err}") from None
    if isinstance(data, dict) and "extends" in data:
        base_name = data.pop("extends")
        if not isinstance(base_name, str):
            raise ScenarioError(
                f"scenario {source} is invalid:\n  extends: must be a scenario name or path"
            )
        if "/" not in base_name and not base_name.endswith((".yaml", ".yml")):
            sibling = path.parent / f"{base_name}.yaml"
            base_ref: str | Path = sibling if sibling.exists() else base_name
        else:
            base_ref = path.parent / base_name
        base, _ = _read_raw(base_ref, (*chain, source))
        if not isinstance(base, dict):
            raise ScenarioError(f"scenario {source}: base {base_name!r} is not a mapping")
        data = {**base, **data}
    return data, source


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``demo``) or a scenario file by path.

    A file may start from another one with ``extends: <name or path>``: its top-level keys
    replace the base's.

    Raises:
        ScenarioError: The name or file does not exist, is not YAML, or does not validate.
    """
    data, source = _read_raw(name_or_path)
    return parse_scenario(data, source)


# -- building objects ---------------------------------------------------------------------


def _create(cluster: Cluster, obj: Obj) -> None:
    rt = by_kind(obj["kind"], obj["apiVersion"], cluster.store.custom_types)
    if rt is None:
        raise ScenarioError(f"the sandbox does not serve {obj['apiVersion']} {obj['kind']}")
    # populate is idempotent: running it twice keeps what exists
    try:
        cluster.store.create(rt, obj)
    except AlreadyExists:
        if obj["kind"] == "Namespace":
            # A system namespace (default, kube-system, ...) the scenario labels.
            meta = obj["metadata"]

            def label(ns: Obj) -> None:
                ns["metadata"].setdefault("labels", {}).update(meta.get("labels") or {})
                if meta.get("annotations"):
                    ns["metadata"].setdefault("annotations", {}).update(meta["annotations"])

            cluster.store.mutate(rt, "", meta["name"], label)


def _namespace(name: str, labels: dict[str, str], annotations: dict[str, str]) -> Obj:
    meta: Obj = {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}
    if annotations:
        meta["annotations"] = dict(annotations)
    # As the API server's namespace strategy creates it: finalizer and phase Active.
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _port(protocol: str) -> Obj:
    if protocol == "grpc":
        return {"name": "grpc", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
    return {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}


def _container(name: str, protocol: str, image: str) -> Obj:
    port = _port(protocol)
    return {
        "name": name,
        "image": image,
        "ports": [{"containerPort": port["targetPort"], "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port["targetPort"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    }


def workload_objects(namespace: str, w: WorkloadSpec) -> list[Obj]:
    """The workload, its Service, as a team would deploy them."""
    pod_labels = {"app": w.name, "version": "v1", **w.labels}
    annotations: dict[str, str] = {}
    if w.helm_gateway:
        # manifests/charts/gateway/templates/_helpers.tpl: selector labels app/istio and the
        # sidecarInjectionLabels; values.yaml podAnnotations.
        pod_labels = {
            LABEL_POD_INJECT: "true",
            **({LABEL_REV: w.revision} if w.revision else {}),
            "app": w.name,
            "istio": w.name.removeprefix("istio-"),
            "app.kubernetes.io/name": w.name,
            **w.labels,
        }
        annotations.update(
            {
                "prometheus.io/port": "15020",
                "prometheus.io/scrape": "true",
                "prometheus.io/path": "/stats/prometheus",
                ANNOTATION_INJECT_TEMPLATES: "gateway",
                LABEL_POD_INJECT: "true",
            }
        )
        container = _container("istio-proxy", w.protocol, "auto")
    elif w.gateway:
        pod_labels.setdefault("istio", "ingressgateway")
        annotations[ANNOTATION_INJECT_TEMPLATES] = "gateway"
        # Istio's gateway injection template replaces the image "auto" with the proxy image.
        container = _container("istio-proxy", w.protocol, "auto")
    else:
        container = _container(w.name, w.protocol, f"{APP_IMAGE_HUB}/{w.name}:1.0")
    pod_spec: Obj = {"containers": [container], "terminationGracePeriodSeconds": 5}
    if w.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    template: Obj = {"metadata": {"labels": pod_labels}, "spec": pod_spec}
    if annotations:
        template["metadata"]["annotations"] = annotations
    selector = {"app": w.name}
    if w.helm_gateway:
        selector["istio"] = pod_labels["istio"]
        pod_spec["serviceAccountName"] = w.name
    spec: Obj = {"selector": {"matchLabels": selector}, "template": template}
    api_version = "apps/v1"
    if w.kind == "Deployment":
        spec["replicas"] = w.replicas
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
        }
        if w.paused:
            spec["paused"] = True
    elif w.kind == "Rollout":
        api_version = ROLLOUT_API_VERSION
        spec["replicas"] = w.replicas
        spec["strategy"] = {"canary": {"maxSurge": "25%", "maxUnavailable": 0}}
        if w.paused:
            spec["paused"] = True
    elif w.kind == "StatefulSet":
        spec["replicas"] = w.replicas
        spec["serviceName"] = w.name
        spec["updateStrategy"] = (
            {"type": "OnDelete"}
            if w.update_strategy == "OnDelete"
            else {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        )
    else:
        spec["updateStrategy"] = (
            {"type": "OnDelete"}
            if w.update_strategy == "OnDelete"
            else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
        )
    workload = {
        "apiVersion": api_version,
        "kind": w.kind,
        "metadata": {"name": w.name, "namespace": namespace, "labels": {"app": w.name}},
        "spec": spec,
    }
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": w.name, "namespace": namespace, "labels": {"app": w.name}},
        "spec": {"type": "ClusterIP", "selector": selector, "ports": [_port(w.protocol)]},
    }
    if not w.helm_gateway:
        return [workload, service]
    service["spec"]["type"] = "LoadBalancer"
    service["spec"]["ports"] = [
        {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
        {"name": "http2", "port": 80, "targetPort": 80, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"},
    ]
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": w.name, "namespace": namespace, "labels": dict(selector)},
    }
    return [account, workload, service]


def _bare_pod(namespace: str, p: PodSpec) -> Obj:
    labels = {"app": p.name, **p.labels}
    if p.opt_out:
        labels[LABEL_POD_INJECT] = "false"
    meta: Obj = {"name": p.name, "namespace": namespace, "labels": labels}
    if p.annotations:
        meta["annotations"] = dict(p.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [_container(p.name, "http", f"{APP_IMAGE_HUB}/{p.name}:1.0")],
            "restartPolicy": "Always",
        },
    }


def _job(namespace: str, j: JobSpec) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": j.name, "namespace": namespace, "labels": {"app": j.name}},
        "spec": {
            "completions": j.completions,
            "parallelism": 1,
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": {"app": j.name, "job-name": j.name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": j.name, "image": f"{APP_IMAGE_HUB}/{j.name}:1.0"},
                    ],
                },
            },
        },
    }


def _paused_replicaset(cluster: Cluster, namespace: str, name: str) -> None:
    """A Deployment paused after its first rollout: the ReplicaSet the deployment controller
    made before the pause (revision 1), so the paused Deployment has its pods."""
    dep_rt = by_kind("Deployment", "apps/v1")
    rs_rt = by_kind("ReplicaSet", "apps/v1")
    assert dep_rt is not None and rs_rt is not None
    dep = cluster.store.get(dep_rt, namespace, name)
    template = clone(dep["spec"]["template"])
    hash_ = template_hash(template)
    template["metadata"].setdefault("labels", {})["pod-template-hash"] = hash_
    selector = clone(dep["spec"]["selector"])
    selector.setdefault("matchLabels", {})["pod-template-hash"] = hash_
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{hash_}",
            "namespace": namespace,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": dep["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": dep["spec"].get("replicas", 1), "selector": selector,
                 "template": template},
    }  # fmt: skip
    with contextlib.suppress(AlreadyExists):
        cluster.store.create(rs_rt, rs)


def populate_control_plane(cluster: Cluster, scenario: Scenario) -> None:
    """Create the Istio CRDs, ``istio-system``, the revisions' objects and the tag webhooks."""
    if scenario.istio_crds:
        for crd in render_crds():
            _create(cluster, crd)
    if scenario.needs_rollouts_crd():
        _create(cluster, render_rollout_crd())
    if scenario.needs_gateway_api():
        for crd in render_gateway_api_crds():
            _create(cluster, crd)
        for cls in render_gateway_classes():
            _create(cluster, cls)
    _create(cluster, _namespace(ISTIO_NAMESPACE, {}, {}))
    for rev in scenario.revisions:
        for obj in render_istiod(rev.version, rev.chart_revision):
            _create(cluster, obj)
    chart_revisions = {r.name: r.chart_revision for r in scenario.revisions}
    for tag, revision in scenario.tags.items():
        for obj in render_tag(tag, chart_revisions.get(revision, revision)):
            _create(cluster, obj)
    if scenario.default_validator is not None:
        validator = chart_revisions.get(scenario.default_validator, scenario.default_validator)
        _create(cluster, render_default_validator(validator))
    if scenario.ambient is not None:
        amb = scenario.ambient
        target = amb.revision if amb.revision is not None else scenario.revisions[0].name
        for obj in render_istio_cni(amb.version):
            _create(cluster, obj)
        for obj in render_ztunnel(amb.version, chart_revisions.get(target, target)):
            _create(cluster, obj)


def populate_workloads(cluster: Cluster, scenario: Scenario) -> None:
    """Create the namespaces, workloads, Services, Jobs and bare pods.

    Pods of workloads come from the controllers; bare pods are created here, through the
    store's admission chain, so the sidecar injector sees them as it would in a cluster.
    """
    for _, ns in scenario.all_namespaces():
        _create(cluster, _namespace(ns.name, ns.labels, ns.annotations))
        for w in ns.workloads:
            for obj in workload_objects(ns.name, w):
                _create(cluster, obj)
            if w.paused and w.kind == "Deployment":
                _paused_replicaset(cluster, ns.name, w.name)
        for j in ns.jobs:
            _create(cluster, _job(ns.name, j))
        for p in ns.pods:
            _create(cluster, _bare_pod(ns.name, p))
        for g in ns.gateways:
            _create(
                cluster,
                gateway_object(
                    g.name, ns.name, g.gateway_class, labels=g.object_labels(), port=g.port
                ),
            )
    for obj in scenario.istio_resources:
        _create(cluster, obj)


def populate(cluster: Cluster, scenario: Scenario) -> None:
    """Create every object of the scenario in the cluster's store (idempotent)."""
    populate_control_plane(cluster, scenario)
    populate_workloads(cluster, scenario)


def new_cluster(scenario: Scenario) -> Cluster:
    """An empty cluster with the scenario's name, timings and faults."""
    return Cluster(
        name=scenario.cluster_name,
        timings=scenario.timings.model_copy(),
        faults=scenario.faults.model_copy(deep=True),
        rbac_enforced=scenario.rbac,
    )


__all__ = [
    "AmbientSpec",
    "GatewaySpec",
    "GenerateSpec",
    "JobSpec",
    "NamespaceSpec",
    "PodSpec",
    "RevisionSpec",
    "Scenario",
    "ScenarioError",
    "WorkloadSpec",
    "load_scenario",
    "new_cluster",
    "parse_scenario",
    "populate",
    "populate_control_plane",
    "populate_workloads",
    "shipped_scenarios",
    "workload_objects",
]
