"""What an upgrade asks of the Kubernetes API, as RBAC sees it: the permission precheck's list.

Every request the activities send is listed here once, by the step that sends it, as a verb on
a resource (API group, plural, subresource) in a scope: cluster-scoped, every namespace at
once (the cluster-wide lists of discovery), ``istio-system``, or each namespace the plan
migrates. ``required_permissions`` is the static part, decided by the spec and the plan; the
revision bundle adds one entry per object it applies (``object_needs``) and the old
revision's inventory one per object its removal deletes (``removal_needs``), which the
``check_permissions`` activity resolves against the cluster's API discovery.

``deploy/`` grants exactly this list — ``tests/unit/test_deploy_rbac.py`` checks the rendered
RBAC against it, and ``tests/integration/test_least_privilege.py`` checks it against the
requests an upgrade really sends. ``component`` says which part of ``deploy/`` grants an
entry, so that a refusal tells the operator where the missing rule belongs.

Pure code: the workflow builds the activity's input from the spec and the plan.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from istio_upgrade.istio.naming import ISTIO_NAMESPACE, tag_service_name, tag_webhook_name
from istio_upgrade.models.plan import Finding, Plan
from istio_upgrade.models.spec import (
    BundleSource,
    ClusterRef,
    CRDSpec,
    InstallerSpec,
    UpgradeSpec,
)

Scope = Literal["cluster", "all-namespaces", "namespace", "plan-namespaces"]
"""``cluster``: a cluster-scoped resource. ``all-namespaces``: a namespaced resource across
every namespace at once (a cluster-wide list; only a ClusterRoleBinding grants it).
``namespace``: in ``AccessNeed.namespace``. ``plan-namespaces``: in every namespace the plan
migrates (granted cluster-wide or by a RoleBinding in each)."""

Component = Literal["base", "installer-manifests", "installer-sail"]
"""Where ``deploy/`` grants a permission: ``deploy/rbac.yaml`` (migration),
``deploy/components/installer-manifests`` (installing with the ``manifests`` strategy) or
``deploy/components/installer-sail`` (the ``sail`` strategy)."""

COMPONENT_FILES: dict[str, str] = {
    "base": "deploy/rbac.yaml",
    "installer-manifests": "deploy/components/installer-manifests/rbac.yaml",
    "installer-sail": "deploy/components/installer-sail/rbac.yaml",
}
SAIL_GROUP = "sailoperator.io"

CRD_GATEWAYS = "gateways.gateway.networking.k8s.io"
CRD_ENVOYFILTERS = "envoyfilters.networking.istio.io"
GATEWAY_GROUP = "gateway.networking.k8s.io"
ADMISSION_GROUP = "admissionregistration.k8s.io"
RBAC_GROUP = "rbac.authorization.k8s.io"

MAX_NAMES_SHOWN = 5
MAX_NAMESPACES_LISTED = 50
"""Namespaces a missing permission lists, so that the report stays small for any plan."""
EVENTS_OF_CLUSTER_OBJECTS = "default"
"""Where the Events about cluster-scoped objects go (``activities/audit.py``)."""


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class AccessNeed(_Model):
    """One request an upgrade sends, as RBAC authorizes it."""

    verb: str
    """``get``, ``list``, ``create``, ``patch``, ``delete``; ``escalate``/``bind`` for roles."""
    group: str = ""
    """API group; ``""`` is the core group."""
    resource: str
    """Plural, e.g. ``deployments``."""
    subresource: str = ""
    name: str = ""
    """The object's name when the request names one (a server-side apply, a delete)."""
    scope: Scope
    namespace: str = ""
    """For scope ``namespace``."""
    purpose: str
    """The step that sends the request, for the operator reading a refusal."""
    component: Component = "base"
    optional: bool = False
    """Diagnostics only (Events, proxy logs): missing it is a warning, not a refusal."""

    @property
    def resource_ref(self) -> str:
        """``group/resource[/subresource]``, the core group written ``core``."""
        ref = f"{self.group or 'core'}/{self.resource}"
        return f"{ref}/{self.subresource}" if self.subresource else ref


class ResolvedObject(_Model):
    """An object a step writes or deletes, resolved through API discovery."""

    kind: str
    group: str
    resource: str
    name: str
    namespaced: bool


class PermissionsInput(_Model):
    """What the ``check_permissions`` activity needs to list an upgrade's requests."""

    cluster: ClusterRef
    namespaces: list[str] = Field(default_factory=list)
    """The namespaces the plan migrates; empty before there is a plan (discovery refused),
    then namespaced permissions are checked cluster-wide only."""
    per_workload: list[str] = Field(default_factory=list)
    """``namespace/Kind`` of workloads the plan migrates by their pod template (``Gateway``:
    a Gateway API gateway, by its own label)."""
    tags: list[str] = Field(default_factory=list)
    """Revision tags moved at promote (and back by a rollback)."""
    gateway_api: bool = False
    """Gateway API's CRDs are installed: discovery lists its Gateways."""
    installs: bool = True
    """The upgrade installs the target revision (the installer's rights are needed)."""
    removes_source: bool = True
    """Cleanup may remove the old revision (``cleanup.keep_old_revision`` unset)."""
    removes_target: bool = True
    """A rollback may remove the target revision (``rollback.keep_new_revision`` unset)."""
    source_revision: str | None = None
    """The revision upgraded from, whose inventory names what its removal deletes."""
    target_revision: str = ""
    version: str = ""
    hub: str = "docker.io/istio"
    installer: InstallerSpec = Field(default_factory=InstallerSpec)
    crds: CRDSpec | None = None


class MissingPermission(_Model):
    """A permission the worker lacks, and where."""

    verb: str
    group: str = ""
    resource: str
    subresource: str = ""
    scope: Scope
    namespaces: list[str] = Field(default_factory=list)
    """Where it is missing (scope ``namespace``/``plan-namespaces``), at most
    :data:`MAX_NAMESPACES_LISTED`; empty otherwise."""
    more_namespaces: int = 0
    """Namespaces where it is missing too, beyond those listed (a plan of thousands)."""
    names: list[str] = Field(default_factory=list)
    """The objects it is missing for, when the requests name them."""
    purpose: str
    component: Component = "base"
    optional: bool = False
    alternative: str = ""
    """Another way to satisfy it (a role the worker may also write by holding its rules)."""

    @property
    def resource_ref(self) -> str:
        ref = f"{self.group or 'core'}/{self.resource}"
        return f"{ref}/{self.subresource}" if self.subresource else ref

    @property
    def where(self) -> str:
        if self.scope == "cluster":
            return "(cluster-scoped)"
        if self.scope == "all-namespaces":
            return "in all namespaces (a cluster-wide request)"
        shown = ", ".join(self.namespaces[:MAX_NAMES_SHOWN])
        more = len(self.namespaces) + self.more_namespaces - MAX_NAMES_SHOWN
        label = "namespace" if len(self.namespaces) == 1 else "namespaces"
        return f"in {label} {shown}" + (f" and {more} more" if more > 0 else "")

    @property
    def rule(self) -> str:
        """The RBAC rule that grants it, in the YAML flow style of a role's ``rules``."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        rule = f'{{apiGroups: ["{self.group}"], resources: ["{resource}"], verbs: ["{self.verb}"]'
        return rule + "}"

    @property
    def grant(self) -> str:
        """What to grant, and where ``deploy/`` has that rule."""
        if self.scope in ("cluster", "all-namespaces"):
            how = f"a ClusterRole rule {self.rule} bound by a ClusterRoleBinding"
        elif self.scope == "namespace":
            how = f"a Role rule {self.rule} in {', '.join(self.namespaces)} bound by a RoleBinding"
        else:
            how = (
                f"a ClusterRole rule {self.rule} bound by a ClusterRoleBinding, or by a "
                "RoleBinding in each of those namespaces"
            )
        return f"grant the worker {how} ({COMPONENT_FILES[self.component]} has it)"

    @property
    def message(self) -> str:
        named = ""
        if self.names:
            shown = ", ".join(self.names[:MAX_NAMES_SHOWN])
            more = len(self.names) - MAX_NAMES_SHOWN
            named = f" named {shown}" + (f" and {more} more" if more > 0 else "")
        text = (
            f"the worker may not {self.verb} {self.resource_ref}{named} {self.where}, which "
            f"it needs to {self.purpose}: {self.grant}"
        )
        return text + (f"; or {self.alternative}" if self.alternative else "")


class PermissionReport(_Model):
    """What the SelfSubjectAccessReviews of an upgrade's permissions answered."""

    checked: int = 0
    """SelfSubjectAccessReviews made."""
    missing: list[MissingPermission] = Field(default_factory=list)
    unchecked: str = ""
    """Why nothing could be checked (an API server without SelfSubjectAccessReview)."""

    @property
    def ok(self) -> bool:
        return not any(not m.optional for m in self.missing)


def _need(
    verb: str,
    group: str,
    resource: str,
    scope: Scope,
    purpose: str,
    *,
    subresource: str = "",
    name: str = "",
    namespace: str = "",
    component: Component = "base",
    optional: bool = False,
) -> AccessNeed:
    return AccessNeed(
        verb=verb,
        group=group,
        resource=resource,
        subresource=subresource,
        name=name,
        scope=scope,
        namespace=namespace,
        purpose=purpose,
        component=component,
        optional=optional,
    )


def _istio_system(
    verb: str,
    group: str,
    resource: str,
    purpose: str,
    *,
    name: str = "",
    component: Component = "base",
) -> AccessNeed:
    return _need(
        verb,
        group,
        resource,
        "namespace",
        purpose,
        name=name,
        namespace=ISTIO_NAMESPACE,
        component=component,
    )


_WORKLOAD_RESOURCES = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}


def required_permissions(spec: PermissionsInput) -> list[AccessNeed]:
    """The permissions every upgrade of ``spec`` needs, before its bundle is read.

    Mirrors the requests of ``activities/discovery.py``, ``migration.py``, ``diagnostics.py``,
    ``lock.py``, ``default_tag.py`` and ``installer.py``.
    """
    plan: Scope = "plan-namespaces"
    needs = [
        # discover (discovery.py): a few cluster-wide lists, no per-pod GETs.
        _need("list", "", "namespaces", "cluster", "discover namespaces and their labels"),
        _need("list", "", "pods", "all-namespaces", "discover pods and verify revisions unused"),
        *(
            _need("list", "apps", r, "all-namespaces", "discover workloads")
            for r in ("replicasets", "deployments", "statefulsets", "daemonsets")
        ),
        _need(
            "list",
            ADMISSION_GROUP,
            "mutatingwebhookconfigurations",
            "cluster",
            "discover injectors and revision tags",
        ),
        _need(
            "list",
            ADMISSION_GROUP,
            "validatingwebhookconfigurations",
            "cluster",
            "verify that no webhook still calls the old istiod",
        ),
        *(
            _need(
                "get",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "cluster",
                "discover whether Gateway API and EnvoyFilters are installed",
                name=crd,
            )
            for crd in (CRD_GATEWAYS, CRD_ENVOYFILTERS)
        ),
        _need(
            "list",
            "networking.istio.io",
            "envoyfilters",
            "all-namespaces",
            "name the EnvoyFilters an upgrade puts at risk",
        ),
        _istio_system("list", "", "configmaps", "discover the revisions this product installed"),
        _istio_system(
            "get", "", "configmaps", "read the cluster lock, revision inventories and tag backups"
        ),
        _istio_system("get", "apps", "deployments", "wait for the new istiod to be Ready"),
        # The cluster lock (lock.py): a plain create, released by a delete.
        _istio_system("create", "", "configmaps", "take the cluster lock"),
        _istio_system("delete", "", "configmaps", "release the cluster lock"),
        # Migration (migration.py) in every namespace of the plan.
        _need("get", "", "namespaces", plan, "check that a namespace still exists"),
        _need("patch", "", "namespaces", plan, "set the namespaces' injection labels"),
        *(
            _need("patch", "apps", r, plan, "restart workloads")
            for r in ("deployments", "statefulsets", "daemonsets")
        ),
        # Diagnostics of stragglers (diagnostics.py): evidence, never a reason to fail.
        _need("list", "", "events", plan, "diagnose stuck pods (their Events)", optional=True),
        _need(
            "get",
            "",
            "pods",
            plan,
            "diagnose stuck pods (their istio-proxy log)",
            subresource="log",
            optional=True,
        ),
        # Every write leaves an Event on its object (audit.py): in the object's namespace, a
        # Namespace's in itself, other cluster-scoped objects' in default. A courtesy: an
        # Event refused is logged, never a failed step.
        _need("create", "", "events", plan, "leave an Event on what it changes", optional=True),
        *(
            _need(
                "create",
                "",
                "events",
                "namespace",
                "leave an Event on what it changes",
                namespace=namespace,
                optional=True,
            )
            for namespace in (ISTIO_NAMESPACE, EVENTS_OF_CLUSTER_OBJECTS)
        ),
        # verify_revision_unused reads the default tag's webhook (installer.py).
        _need(
            "get",
            ADMISSION_GROUP,
            "mutatingwebhookconfigurations",
            "cluster",
            "read revision tags",
            name=tag_webhook_name("default"),
        ),
    ]
    if spec.gateway_api:
        needs.append(
            _need(
                "list", GATEWAY_GROUP, "gateways", "all-namespaces", "discover Gateway API gateways"
            )
        )
    for ref in sorted(set(spec.per_workload)):
        namespace, _, kind = ref.partition("/")
        if kind == "Gateway":
            needs += [
                _need(
                    verb,
                    GATEWAY_GROUP,
                    "gateways",
                    "namespace",
                    "move Gateway API gateways by their istio.io/rev label",
                    namespace=namespace,
                )
                for verb in ("get", "patch")
            ]
            kind = "Deployment"  # istiod's rendering of it, read until it follows the label
        if kind in _WORKLOAD_RESOURCES:
            needs.append(
                _need(
                    "get",
                    "apps",
                    _WORKLOAD_RESOURCES[kind],
                    "namespace",
                    "move workloads by their pod template's istio.io/rev",
                    namespace=namespace,
                )
            )
    if spec.installer.strategy == "sail":
        return needs + sail_needs(spec)
    if spec.tags:
        needs += _tag_needs(spec.tags)
    if spec.installs and spec.crds is not None:
        needs += [
            _need(
                verb,
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "cluster",
                "apply the target's Istio CRDs",
                component="installer-manifests",
            )
            for verb in ("create", "patch")
        ]
    if spec.installs:
        needs += [
            _istio_system("patch", "", "configmaps", "record the new revision's inventory"),
        ]
    sources: list[tuple[BundleSource, str]] = [
        (spec.installer, "read the rendered revision bundle")
    ]
    if spec.crds is not None:
        sources.append((spec.crds, "read the rendered CRDs"))
    for source, purpose in sources:
        if source.bundle_configmap is not None:
            cm = source.bundle_configmap
            needs.append(
                _need(
                    "get",
                    "",
                    "configmaps",
                    "namespace",
                    purpose,
                    name=cm.name,
                    namespace=cm.namespace,
                )
            )
    return needs


def sail_needs(spec: PermissionsInput) -> list[AccessNeed]:
    """The ``sail`` strategy's requests (``activities/sail.py``): the ``Istio`` resource read
    and patched (its version, the record of what changed), the ``IstioRevision``s waited on and
    pruned, the ``IstioRevisionTag``s pinned and moved, ``IstioCNI``/``ZTunnel`` upgraded."""
    istio = spec.installer.sail.istio if spec.installer.sail is not None else "default"
    sail: Component = "installer-sail"
    needs = [
        _need(v, SAIL_GROUP, "istios", "cluster", "read and set the Istio resource's version",
              name=istio, component=sail)
        for v in ("get", "patch")
    ]  # fmt: skip
    needs.append(
        _need("get", SAIL_GROUP, "istiorevisions", "cluster", "wait for the new IstioRevision",
              component=sail)
    )  # fmt: skip
    if spec.removes_source or spec.removes_target:
        needs.append(
            _need("delete", SAIL_GROUP, "istiorevisions", "cluster",
                  "delete the revision left inactive (prune: delete)", component=sail)
        )  # fmt: skip
    needs += [
        _need(v, SAIL_GROUP, "istiorevisiontags", "cluster", "pin and move the revision tags",
              component=sail)
        for v in ("get", "list", "patch", "create", "delete")
    ]  # fmt: skip
    needs += [
        _need(v, SAIL_GROUP, r, "cluster", "upgrade the ambient components with the control plane",
              component=sail)
        for r in ("istiocnis", "ztunnels")
        for v in ("list", "patch")
    ]  # fmt: skip
    return needs


def _tag_needs(tags: list[str]) -> list[AccessNeed]:
    """``move_tags`` (installer.py, default_tag.py): the tag's webhook and Service are applied
    server-side (created the first time) and deleted when a rollback restores an absent tag;
    moving ``default`` also deactivates the revisionless injector and re-points the default
    validator, recording both in a ConfigMap first."""
    needs: list[AccessNeed] = [
        _need(
            "get",
            ADMISSION_GROUP,
            "validatingwebhookconfigurations",
            "cluster",
            "read the validators that follow a tag",
        ),
        _need(
            "get",
            ADMISSION_GROUP,
            "mutatingwebhookconfigurations",
            "cluster",
            "read the revision tags",
        ),
        _need(
            "patch",
            ADMISSION_GROUP,
            "mutatingwebhookconfigurations",
            "cluster",
            "move revision tags (and deactivate the revisionless injector)",
        ),
        _need(
            "patch",
            ADMISSION_GROUP,
            "validatingwebhookconfigurations",
            "cluster",
            "re-point the validators that follow a tag",
        ),
        _istio_system("patch", "", "configmaps", "record what moving a tag changes"),
    ]
    for tag in sorted(set(tags)):
        webhook = tag_webhook_name(tag)
        service = tag_service_name(tag)
        purpose = f"move the {tag} tag (its webhook and Service)"
        needs += [
            _need(
                verb,
                ADMISSION_GROUP,
                "mutatingwebhookconfigurations",
                "cluster",
                purpose,
                name=webhook,
                component="installer-manifests",
            )
            for verb in ("create", "delete")
        ]
        needs += [
            _istio_system(
                verb, "", "services", purpose, name=service, component="installer-manifests"
            )
            for verb in ("create", "patch", "delete")
        ]
    return needs


def ondelete_needs(namespaces: list[str]) -> list[AccessNeed]:
    """Deleting pods in the namespaces of the plan that run an OnDelete StatefulSet or
    DaemonSet: such a workload replaces a pod only when it is deleted, so the rollout wait
    deletes its old pods one at a time (``migration.replace_one_old_pod``)."""
    return [
        _need(
            "delete",
            "",
            "pods",
            "namespace",
            "replace the pods of OnDelete StatefulSets and DaemonSets",
            namespace=namespace,
        )
        for namespace in sorted(set(namespaces))
    ]


def granting_component(verb: str, group: str, resource: str) -> Component:
    """Which part of ``deploy/`` grants ``verb`` on a bundle object's resource.

    The migration's rights (``deploy/rbac.yaml``) already cover patching Deployments and
    webhook configurations and writing ConfigMaps in ``istio-system``; the installer component
    adds only what installing needs beyond them.
    """
    if verb == "patch" and (group, resource) in {
        ("apps", "deployments"),
        (ADMISSION_GROUP, "mutatingwebhookconfigurations"),
        (ADMISSION_GROUP, "validatingwebhookconfigurations"),
    }:
        return "base"
    if (group, resource) == ("", "configmaps"):
        return "base"
    return "installer-manifests"


def object_needs(
    objects: list[ResolvedObject], *, removes: bool, revision: str
) -> list[AccessNeed]:
    """Installing ``objects`` by server-side apply (patch, and create where it is new), and
    deleting them when a rollback removes the revision.

    A role may be written only by whom may ``escalate`` it (or holds all it grants), a
    binding only by whom may ``bind`` its role (or holds all it grants): RBAC's escalation
    prevention, enforced by the API server on the write itself. These entries name the role;
    the activity also accepts holding every rule the bundle's role grants.
    """
    needs: list[AccessNeed] = []
    purpose = f"install revision {revision}"
    for obj in objects:
        scope: Scope = "namespace" if obj.namespaced else "cluster"
        namespace = ISTIO_NAMESPACE if obj.namespaced else ""
        verbs = ["create", "patch"] + (["delete"] if removes else [])
        for verb in verbs:
            needs.append(
                _need(
                    verb,
                    obj.group,
                    obj.resource,
                    scope,
                    purpose if verb != "delete" else f"remove revision {revision} on rollback",
                    name=obj.name,
                    namespace=namespace,
                    component=granting_component(verb, obj.group, obj.resource),
                )
            )
        if obj.group == RBAC_GROUP and obj.resource in ("clusterroles", "roles"):
            needs.append(
                _need(
                    "escalate",
                    RBAC_GROUP,
                    obj.resource,
                    scope,
                    f"{purpose} (write istiod's {obj.kind} {obj.name})",
                    name=obj.name,
                    namespace=namespace,
                    component="installer-manifests",
                )
            )
    return needs


def binding_need(
    binding: ResolvedObject, role_kind: str, role_name: str, revision: str
) -> AccessNeed:
    """``bind`` on the role a binding of the bundle refers to."""
    cluster = binding.resource == "clusterrolebindings"
    return _need(
        "bind",
        RBAC_GROUP,
        "clusterroles" if role_kind == "ClusterRole" else "roles",
        "cluster" if cluster else "namespace",
        f"install revision {revision} (bind istiod's {role_kind} {role_name})",
        name=role_name,
        namespace="" if cluster else ISTIO_NAMESPACE,
        component="installer-manifests",
    )


def removal_needs(objects: list[ResolvedObject], revision: str) -> list[AccessNeed]:
    """Deleting an old revision's objects (its inventory's, else the chart's names)."""
    return [
        _need(
            "delete",
            o.group,
            o.resource,
            "namespace" if o.namespaced else "cluster",
            f"remove the old revision {revision}",
            name=o.name,
            namespace=ISTIO_NAMESPACE if o.namespaced else "",
            component=granting_component("delete", o.group, o.resource),
        )
        for o in objects
    ]


def permissions_input(
    spec: UpgradeSpec, plan: Plan | None, gateway_api: bool = False
) -> PermissionsInput:
    """The check of an upgrade of ``spec`` with ``plan`` (None before there is one);
    ``gateway_api``: the cluster serves the Gateway API (its Gateways are listed then)."""
    per_workload: list[str] = []
    # Before there is a plan (discovery was refused), the spec's tags stand for the plan's.
    tags = list(spec.promote.tags)
    if plan is not None:
        for batch in plan.batches:
            per_workload += [f"{w.namespace}/{w.kind}" for w in batch.workloads]
        tags = list(plan.tags_to_move)
    return PermissionsInput(
        cluster=spec.cluster,
        namespaces=list(plan.namespaces) if plan is not None else [],
        per_workload=sorted(set(per_workload)),
        tags=tags,
        gateway_api=gateway_api,
        installs=True,
        removes_source=not spec.cleanup.keep_old_revision,
        removes_target=not spec.rollback.keep_new_revision,
        source_revision=(plan.source_revision if plan is not None else spec.source_revision)
        or None,
        target_revision=spec.target_revision,
        version=spec.target.version,
        hub=spec.target.hub,
        installer=spec.installer,
        crds=spec.crds,
    )


def permission_findings(report: PermissionReport) -> list[Finding]:
    """Precheck findings: one per missing permission (diagnostics-only ones as warnings)."""
    findings = [
        Finding(
            severity="warning" if m.optional else "error",
            code="PERMISSION_MISSING",
            message=m.message,
        )
        for m in report.missing
    ]
    if report.unchecked:
        findings.append(
            Finding(
                severity="warning",
                code="PERMISSIONS_UNCHECKED",
                message=f"the worker's permissions were not checked: {report.unchecked}",
            )
        )
    return findings


__all__ = [
    "AccessNeed",
    "MissingPermission",
    "PermissionReport",
    "PermissionsInput",
    "ResolvedObject",
    "binding_need",
    "granting_component",
    "object_needs",
    "ondelete_needs",
    "permission_findings",
    "permissions_input",
    "removal_needs",
    "required_permissions",
]
