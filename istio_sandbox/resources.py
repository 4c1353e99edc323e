"""The resource types the sandbox serves, as the API server's discovery documents describe them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (e.g. ``apps/v1 deployments``)."""

    group: str
    """API group; ``""`` for the core group."""
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    """Subresources served, e.g. ``status``, ``scale``, ``log``."""
    categories: tuple[str, ...] = ()
    singular: str = field(default="")
    verbs: tuple[str, ...] = ()
    """Verbs discovery lists; empty = all of get, list, watch, create, update, patch, delete,
    deletecollection."""
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    """A custom resource's ``openAPIV3Schema`` (its CRD's version), which writes must meet."""

    @property
    def key(self) -> str:
        """Store key: ``group/plural`` (``/pods`` for the core group)."""
        return f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


_VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        short_names=short,
        subresources=sub,
        categories=categories,
        singular=kind.lower(),
        verbs=verbs,
    )


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _rt("", "v1", "Namespace", "namespaces", namespaced=False, short=("ns",), sub=("status",)),
    _rt("", "v1", "Node", "nodes", namespaced=False, short=("no",), sub=("status",)),
    _rt("", "v1", "Pod", "pods", short=("po",), sub=("status", "log"), categories=("all",)),
    _rt("", "v1", "Service", "services", short=("svc",), sub=("status",), categories=("all",)),
    _rt("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    _rt("", "v1", "Secret", "secrets"),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",)),
    _rt("", "v1", "Event", "events", short=("ev",)),
    # Stored with the core/v1 Events (one storage, two APIs), see istio_sandbox.api.events.
    _rt("events.k8s.io", "v1", "Event", "events", short=("ev",)),
    _rt("", "v1", "Endpoints", "endpoints", short=("ep",)),
    # Stored, never enforced: served so kubectl describe namespace finds them, as in a cluster.
    _rt("", "v1", "ResourceQuota", "resourcequotas", short=("quota",), sub=("status",)),
    _rt("", "v1", "LimitRange", "limitranges", short=("limits",)),
    _rt(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short=("deploy",),
        sub=("status", "scale"),
        categories=("all",),
    ),
    _rt(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short=("sts",),
        sub=("status", "scale"),
        categories=("all",),
    ),
    _rt(
        "apps", "v1", "DaemonSet", "daemonsets", short=("ds",), sub=("status",), categories=("all",)
    ),
    _rt(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short=("rs",),
        sub=("status", "scale"),
        categories=("all",),
    ),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _rt("batch", "v1", "Job", "jobs", sub=("status",), categories=("all",)),
    _rt("batch", "v1", "CronJob", "cronjobs", short=("cj",), sub=("status",), categories=("all",)),
    _rt(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short=("pdb",),
        sub=("status",),
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        namespaced=False,
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        namespaced=False,
    ),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _rt(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    # Questions to the authorizer (istio_sandbox.api.reviews): create only, never stored.
    _rt(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        namespaced=False,
        verbs=("create",),
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        namespaced=False,
        verbs=("create",),
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        namespaced=False,
        verbs=("create",),
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        verbs=("create",),
    ),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short=("crd",),
        sub=("status",),
    ),
)

BY_KEY: dict[str, ResourceType] = {rt.key: rt for rt in RESOURCE_TYPES}


CustomTypes = dict[tuple[str, str, str], ResourceType]
"""(group, version, plural) → a type a CustomResourceDefinition serves (one cluster's)."""


def lookup(
    group: str, version: str, plural: str, custom: CustomTypes | None = None
) -> ResourceType | None:
    """Find a served resource by its URL parts (built-in, then the cluster's CRDs)."""
    rt = BY_KEY.get(f"{group}/{plural}")
    if rt is not None and rt.version == version:
        return rt
    if custom:
        return custom.get((group, version, plural))
    return None


def by_kind(kind: str, api_version: str, custom: CustomTypes | None = None) -> ResourceType | None:
    for rt in all_types(custom):
        if rt.kind == kind and rt.api_version == api_version:
            return rt
    return None


def all_types(custom: CustomTypes | None = None) -> list[ResourceType]:
    """Built-in types followed by the cluster's custom ones."""
    return [*RESOURCE_TYPES, *(custom or {}).values()]


def custom_types_of(crd: dict[str, Any]) -> list[ResourceType]:
    """The types a CustomResourceDefinition serves: one per served version, sharing storage
    (the store key is ``group/plural``), as apiextensions-apiserver serves them."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = tuple(k for k in ("status", "scale") if k in (v.get("subresources") or {}))
        out.append(
            ResourceType(
                group=str(spec.get("group", "")),
                version=str(v.get("name", "")),
                kind=str(names.get("kind", "")),
                plural=str(names.get("plural", "")),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subs,
                categories=tuple(names.get("categories") or ()),
                singular=str(names.get("singular") or str(names.get("kind", "")).lower()),
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
            )
        )
    return out
