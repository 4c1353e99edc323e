"""What ``kubectl kustomize deploy/`` renders lets the worker do exactly what an upgrade does.

The RBAC objects are read from kustomize's output, not from the files: kustomize rewrites
namespaces and subjects, and what it renders is what a cluster gets. The rule matching below
follows Kubernetes' RBAC authorizer (``plugin/pkg/auth/authorizer/rbac/rbac.go``
``RuleAllows``): wildcards, ``resource/subresource``, ``resourceNames``; a RoleBinding grants
only in its own namespace, a ClusterRoleBinding everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.istio.manifests import load_bundle_yaml
from istio_upgrade.models.permissions import (
    AccessNeed,
    MissingPermission,
    PermissionReport,
    PermissionsInput,
    ResolvedObject,
    binding_need,
    object_needs,
    ondelete_needs,
    permission_findings,
    removal_needs,
    required_permissions,
)
from istio_upgrade.models.spec import BundleConfigMap, ClusterRef, CRDSpec, InstallerSpec

DEPLOY = Path(__file__).parents[2] / "deploy"
INSTALLER_COMPONENT = DEPLOY / "components" / "installer-manifests"
WORKER_NAMESPACE = "istio-upgrade"
WORKER_ACCOUNT = "istio-upgrade-worker"
WORKER = {"kind": "ServiceAccount", "name": WORKER_ACCOUNT, "namespace": WORKER_NAMESPACE}
ISTIO_NAMESPACE = "istio-system"

Obj = dict[str, Any]


def kustomize(path: Path = DEPLOY) -> list[Obj]:
    """The objects ``kubectl kustomize <path>`` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH (kubectl kustomize renders deploy/)")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def objects_of(kind: str, docs: list[Obj]) -> list[Obj]:
    return [d for d in docs if d.get("kind") == kind]


@dataclass(frozen=True)
class Grant:
    """One rule of a role, as bound to the worker."""

    role: str
    """``ClusterRole/<name>`` or ``Role/<namespace>/<name>``."""
    binding: str
    namespace: str | None
    """Where the rule applies: a RoleBinding's namespace; None for a ClusterRoleBinding."""
    rule: Obj

    def key(self) -> tuple[str, str]:
        return self.role, yaml.safe_dump(self.rule, sort_keys=True)


def worker_grants(docs: list[Obj], subject: Obj = WORKER) -> list[Grant]:
    """Every rule bound to ``subject`` by the bindings among ``docs``."""
    roles: dict[tuple[str, str | None, str], Obj] = {}
    for role in objects_of("ClusterRole", docs):
        roles[("ClusterRole", None, role["metadata"]["name"])] = role
    for role in objects_of("Role", docs):
        meta = role["metadata"]
        roles[("Role", meta.get("namespace"), meta["name"])] = role
    grants: list[Grant] = []
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in objects_of(kind, docs):
            if subject not in (binding.get("subjects") or []):
                continue
            meta = binding["metadata"]
            namespace = meta.get("namespace") if kind == "RoleBinding" else None
            ref = binding["roleRef"]
            role_ns = namespace if ref["kind"] == "Role" else None
            role = roles.get((ref["kind"], role_ns, ref["name"]))
            assert role is not None, f"{kind} {meta['name']} refers to a missing {ref}"
            label = f"{ref['kind']}/{role_ns + '/' if role_ns else ''}{ref['name']}"
            for rule in role.get("rules") or []:
                grants.append(Grant(label, f"{kind}/{meta['name']}", namespace, rule))
    return grants


def rule_allows(
    rule: Obj, verb: str, group: str, resource: str, subresource: str = "", name: str = ""
) -> bool:
    """``RuleAllows`` of Kubernetes' RBAC authorizer, for one resource request."""
    verbs = rule.get("verbs") or []
    if verb not in verbs and "*" not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if group not in groups and "*" not in groups:
        return False
    combined = f"{resource}/{subresource}" if subresource else resource
    resources = rule.get("resources") or []
    if not (
        "*" in resources
        or combined in resources
        or (subresource and f"*/{subresource}" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or name in names


def allows(
    grants: list[Grant],
    verb: str,
    group: str,
    resource: str,
    subresource: str = "",
    namespace: str | None = None,
    name: str = "",
) -> bool:
    """Whether the grants allow a request; ``namespace`` None is cluster-scoped or every
    namespace at once (only a ClusterRoleBinding grants that)."""
    return any(
        (g.namespace is None or g.namespace == namespace)
        and rule_allows(g.rule, verb, group, resource, subresource, name)
        for g in grants
    )


def matching(
    grants: list[Grant],
    verb: str,
    group: str,
    resource: str,
    subresource: str = "",
    namespace: str | None = None,
    name: str = "",
) -> list[Grant]:
    """The grants that allow a request."""
    return [
        g
        for g in grants
        if (g.namespace is None or g.namespace == namespace)
        and rule_allows(g.rule, verb, group, resource, subresource, name)
    ]


# kind → (API group, plural, namespaced) of what an istiod chart renders.
KINDS: dict[str, tuple[str, str, bool]] = {
    "ServiceAccount": ("", "serviceaccounts", True),
    "ConfigMap": ("", "configmaps", True),
    "Service": ("", "services", True),
    "Deployment": ("apps", "deployments", True),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers", True),
    "Role": ("rbac.authorization.k8s.io", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings", True),
    "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings", False),
    "MutatingWebhookConfiguration": (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        False,
    ),
    "ValidatingWebhookConfiguration": (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        False,
    ),
}


def upstream_rbac_extras(revision: str) -> list[Obj]:
    """Objects upstream's istiod chart renders with default values that the sandbox's reduced
    rendering leaves out: ``role.yaml``, ``rolebinding.yaml``, ``autoscale.yaml`` and the
    gateway controller's ClusterRole of ``clusterrole.yaml`` / ``clusterrolebinding.yaml``
    (istio/istio ``manifests/charts/istio-control/istio-discovery/templates``)."""
    name = f"istiod-{revision}"
    labels = {"app": "istiod", "release": "istiod"}
    controller = f"istiod-gateway-controller-{revision}-{ISTIO_NAMESPACE}"
    account = {"kind": "ServiceAccount", "name": name, "namespace": ISTIO_NAMESPACE}
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
            "rules": [
                {
                    "apiGroups": ["networking.istio.io"],
                    "verbs": ["create"],
                    "resources": ["gateways"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["create", "get", "watch", "list", "update", "delete"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]},
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "update", "patch", "create"],
                },
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [account],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": controller, "labels": labels},
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "verbs": ["get", "watch", "list", "update", "patch", "create", "delete"],
                    "resources": ["deployments"],
                },
                {
                    "apiGroups": [""],
                    "verbs": ["get", "watch", "list", "update", "patch", "create", "delete"],
                    "resources": ["services", "serviceaccounts"],
                },
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": controller, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": controller,
            },
            "subjects": [account],
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": name,
                "namespace": ISTIO_NAMESPACE,
                "labels": {**labels, "istio.io/rev": revision},
            },
            "spec": {
                "minReplicas": 1,
                "maxReplicas": 5,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            },
        },
    ]


def istiod_bundle(revision: str = "1-31-0", *, hpa: bool = True) -> list[Obj]:
    """A revision bundle with every kind the istiod chart renders by default."""
    extras = upstream_rbac_extras(revision)
    if not hpa:
        extras = [o for o in extras if o["kind"] != "HorizontalPodAutoscaler"]
    return load_bundle_yaml(revision_bundle("1.31.0", revision)) + extras


# The rendered deploy/ ------------------------------------------------------------------


def test_roles_for_istio_system_land_in_istio_system() -> None:
    docs = kustomize()
    roles = objects_of("Role", docs)
    bindings = objects_of("RoleBinding", docs)
    assert roles and bindings
    # The worker needs nothing in its own namespace; every Role is meant for istio-system,
    # and kustomize must not move it (a namespace: field would).
    assert {r["metadata"].get("namespace") for r in roles} == {ISTIO_NAMESPACE}
    assert {b["metadata"].get("namespace") for b in bindings} == {ISTIO_NAMESPACE}
    names = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles}
    assert (ISTIO_NAMESPACE, "istio-upgrade-installer") in names


def test_every_binding_binds_the_worker_service_account_to_a_rendered_role() -> None:
    docs = kustomize()
    bindings = objects_of("ClusterRoleBinding", docs) + objects_of("RoleBinding", docs)
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [WORKER], binding["metadata"]["name"]
    grants = worker_grants(docs)  # asserts every roleRef resolves
    assert {g.binding for g in grants} == {f"{b['kind']}/{b['metadata']['name']}" for b in bindings}


def test_worker_runs_in_its_namespace_as_its_service_account() -> None:
    docs = kustomize()
    for kind in ("ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget"):
        found = objects_of(kind, docs)
        assert found, kind
        assert {o["metadata"]["namespace"] for o in found} == {WORKER_NAMESPACE}, kind
    (deployment,) = objects_of("Deployment", docs)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == WORKER_ACCOUNT
    (account,) = objects_of("ServiceAccount", docs)
    assert account["metadata"]["name"] == WORKER_ACCOUNT
    (namespace,) = objects_of("Namespace", docs)
    assert namespace["metadata"]["name"] == WORKER_NAMESPACE


def test_worker_may_install_and_remove_every_object_of_an_istiod_bundle() -> None:
    grants = worker_grants(kustomize())
    cannot: list[str] = []
    for obj in istiod_bundle():
        group, resource, namespaced = KINDS[obj["kind"]]
        namespace = ISTIO_NAMESPACE if namespaced else None
        name = obj["metadata"]["name"]
        # Server-side apply of an object that does not exist yet is authorised as patch and
        # create; uninstall deletes it.
        for verb in ("create", "patch", "delete"):
            if not allows(grants, verb, group, resource, namespace=namespace, name=name):
                cannot.append(f"{verb} {obj['kind']}/{name}")
        # RBAC's escalation prevention: a role may be written only by one who holds all it
        # grants or may escalate; a binding only by one who holds the role or may bind it.
        if obj["kind"] in ("ClusterRole", "Role") and not allows(
            grants, "escalate", group, resource, namespace=namespace, name=name
        ):
            cannot.append(f"escalate {obj['kind']}/{name}")
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            ref = obj["roleRef"]
            ref_group, ref_resource, _ = KINDS[ref["kind"]]
            ref_ns = ISTIO_NAMESPACE if obj["kind"] == "RoleBinding" else None
            if not allows(
                grants, "bind", ref_group, ref_resource, namespace=ref_ns, name=ref["name"]
            ):
                cannot.append(f"bind {ref['kind']}/{ref['name']}")
    assert not cannot, cannot


# The precheck's list against the rendered RBAC ----------------------------------------------


def component_objects() -> set[tuple[str, str, str | None]]:
    """(kind, name, namespace) of the objects the installer component adds."""
    docs = [d for d in yaml.safe_load_all((INSTALLER_COMPONENT / "rbac.yaml").read_text()) if d]
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs}


def split_grants() -> dict[str, list[Grant]]:
    """The worker's grants by ``deploy/`` part: the base files and the installer component."""
    docs = kustomize()
    mine = component_objects()

    def of_component(d: Obj) -> bool:
        return (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) in mine

    return {
        "base": worker_grants([d for d in docs if not of_component(d)]),
        "installer-manifests": worker_grants([d for d in docs if of_component(d)]),
    }


def resolved(objects: list[Obj]) -> list[ResolvedObject]:
    out = []
    for obj in objects:
        group, resource, namespaced = KINDS[obj["kind"]]
        out.append(
            ResolvedObject(
                kind=obj["kind"],
                group=group,
                resource=resource,
                name=obj["metadata"]["name"],
                namespaced=namespaced,
            )
        )
    return out


PLAN_NAMESPACES = ["frontend", "checkout"]


def every_need() -> list[AccessNeed]:
    """What the precheck asks for an upgrade that does everything: CRDs, a bundle with every
    kind of the istiod chart, per-workload and Gateway API migration, two tags, OnDelete
    workloads, removing the old revision and, on rollback, the new one."""
    spec = PermissionsInput(
        cluster=ClusterRef(name="demo"),
        namespaces=PLAN_NAMESPACES,
        per_workload=[
            "frontend/Deployment",
            "frontend/StatefulSet",
            "frontend/DaemonSet",
            "checkout/Gateway",
        ],
        tags=["default", "canary"],
        gateway_api=True,
        source_revision="1-30-3",
        target_revision="1-31-0",
        version="1.31.0",
        installer=InstallerSpec(
            bundle_configmap=BundleConfigMap(namespace=ISTIO_NAMESPACE, name="bundle")
        ),
        crds=CRDSpec(bundle_configmap=BundleConfigMap(namespace=ISTIO_NAMESPACE, name="crds")),
    )
    bundle = istiod_bundle()
    needs = required_permissions(spec)
    needs += object_needs(resolved(bundle), removes=True, revision="1-31-0")
    for obj, ref in zip(bundle, resolved(bundle), strict=True):
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            needs.append(
                binding_need(ref, obj["roleRef"]["kind"], obj["roleRef"]["name"], "1-31-0")
            )
    # The old revision's objects as the chart names them (installer._default_refs).
    old = [o for o in istiod_bundle("1-30-3") if o["kind"] != "HorizontalPodAutoscaler"]
    needs += removal_needs(resolved(old), "1-30-3")
    needs += ondelete_needs(["frontend"])
    return needs


def granted(grants: list[Grant], need: AccessNeed) -> bool:
    args = (need.verb, need.group, need.resource, need.subresource)
    if need.scope in ("cluster", "all-namespaces"):
        return allows(grants, *args, namespace=None, name=need.name)
    if need.scope == "namespace":
        return allows(grants, *args, namespace=need.namespace, name=need.name)
    return all(
        allows(grants, *args, namespace=ns, name=ns if need.resource == "namespaces" else "")
        for ns in PLAN_NAMESPACES
    )


def test_each_part_of_deploy_grants_what_the_precheck_says_it_grants() -> None:
    parts = split_grants()
    wrong = [
        f"{n.verb} {n.resource_ref} {n.scope} {n.namespace} {n.name}: {n.purpose} "
        f"(said to be in {n.component})"
        for n in every_need()
        if not granted(parts[n.component], n)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_base_alone_cannot_install_or_escalate() -> None:
    base = split_grants()["base"]
    for verb, group, resource in [
        ("create", "rbac.authorization.k8s.io", "clusterroles"),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
        ("bind", "rbac.authorization.k8s.io", "clusterroles"),
        ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("create", "apps", "deployments"),
        ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
        ("get", "", "secrets"),
    ]:
        for namespace in (None, ISTIO_NAMESPACE, "frontend"):
            assert not allows(base, verb, group, resource, namespace=namespace), (verb, resource)
    # It creates nothing but Events and its own ConfigMaps in istio-system.
    creatable = {
        (g.namespace, r) for g in base if "create" in g.rule["verbs"] for r in g.rule["resources"]
    }
    assert creatable == {(None, "events"), (ISTIO_NAMESPACE, "configmaps")}


def atoms(grants: list[Grant]) -> list[tuple[str | None, str, str, str, str]]:
    return [
        (g.namespace, verb, group, resource, name)
        for g in grants
        for verb in g.rule.get("verbs") or []
        for group in g.rule.get("apiGroups") or []
        for resource in g.rule.get("resources") or []
        for name in g.rule.get("resourceNames") or [""]
    ]


def test_no_permission_is_granted_twice() -> None:
    # One place per right, so that removing a rule removes the right (the least-privilege
    # test relies on it) and each part of deploy/ says alone what it adds.
    every = atoms(worker_grants(kustomize()))
    twice = sorted({a for a in every if every.count(a) > 1}, key=str)
    assert not twice, twice


def test_no_wildcards_and_nothing_on_secrets() -> None:
    grants = worker_grants(kustomize())
    for grant in grants:
        rule = grant.rule
        for field in ("verbs", "apiGroups", "resources"):
            assert "*" not in (rule.get(field) or []), (grant.role, rule)
        assert not rule.get("nonResourceURLs"), (grant.role, rule)
    for verb in ("get", "list", "watch"):
        assert not allows(grants, verb, "", "secrets", namespace=ISTIO_NAMESPACE)


# What a refusal says ----------------------------------------------------------------------


def test_a_missing_permission_names_verb_resource_namespace_and_the_rule_to_grant() -> None:
    missing = MissingPermission(
        verb="patch",
        group="apps",
        resource="deployments",
        scope="plan-namespaces",
        namespaces=["frontend", "checkout"],
        purpose="restart workloads",
    )
    assert missing.message == (
        "the worker may not patch apps/deployments in namespaces frontend, checkout, which it "
        'needs to restart workloads: grant the worker a ClusterRole rule {apiGroups: ["apps"], '
        'resources: ["deployments"], verbs: ["patch"]} bound by a ClusterRoleBinding, or by a '
        "RoleBinding in each of those namespaces (deploy/rbac.yaml has it)"
    )
    log = MissingPermission(
        verb="get",
        resource="pods",
        subresource="log",
        scope="namespace",
        namespaces=["frontend"],
        purpose="diagnose stuck pods",
    )
    assert "get core/pods/log in namespace frontend" in log.message
    assert 'resources: ["pods/log"]' in log.message
    role = MissingPermission(
        verb="escalate",
        group="rbac.authorization.k8s.io",
        resource="clusterroles",
        scope="cluster",
        names=["istiod-clusterrole-1-31-0-istio-system"],
        purpose="install revision 1-31-0",
        component="installer-manifests",
    )
    assert role.message.startswith(
        "the worker may not escalate rbac.authorization.k8s.io/clusterroles named "
        "istiod-clusterrole-1-31-0-istio-system (cluster-scoped)"
    )
    assert "deploy/components/installer-manifests/rbac.yaml" in role.message


def test_diagnostics_only_permissions_warn_and_the_rest_refuse() -> None:
    needs = required_permissions(
        PermissionsInput(cluster=ClusterRef(name="demo"), namespaces=["frontend"])
    )
    optional = {(n.verb, n.resource_ref) for n in needs if n.optional}
    assert optional == {
        ("list", "core/events"),
        ("get", "core/pods/log"),
        ("create", "core/events"),
    }
    report = PermissionReport(
        missing=[
            MissingPermission(
                verb="list", resource="events", scope="plan-namespaces", purpose="x", optional=True
            )
        ]
    )
    assert report.ok
    findings = permission_findings(report)
    assert [f.severity for f in findings] == ["warning"]


def test_install_rights_are_asked_only_when_the_upgrade_installs() -> None:
    base = PermissionsInput(cluster=ClusterRef(name="demo"), namespaces=["frontend"])
    no_install = required_permissions(base.model_copy(update={"installs": False}))
    assert all(n.component == "base" for n in no_install)
    with_crds = required_permissions(
        base.model_copy(update={"crds": CRDSpec(bundle_yaml="x"), "tags": ["default"]})
    )
    assert any(n.resource == "customresourcedefinitions" and n.verb == "create" for n in with_crds)
    assert any(n.component == "installer-manifests" for n in with_crds)
