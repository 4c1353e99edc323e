"""The permission precheck: may the worker send every request the upgrade will send?

One ``SelfSubjectAccessReview`` per permission of :func:`required_permissions`, of the
revision bundle's objects and of the old revision's removal — asked of the API server itself,
so that whatever grants the worker its rights (``deploy/``'s roles, an operator's own, a
webhook authorizer) answers as it would for the real request, and a missing right refuses the
upgrade before its first write instead of failing it half-way.

A permission needed in every namespace of the plan is asked once cluster-wide and, only when
that is refused, once per namespace (a RoleBinding per namespace is a valid way to grant it).
Writing istiod's roles needs ``escalate`` (or holding all they grant) and binding them
``bind`` (or the same): when ``escalate``/``bind`` is refused, the role's rules are asked one
by one, as the API server's escalation check compares them.

Writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client import (
    AuthorizationV1Api,
    V1NonResourceAttributes,
    V1ResourceAttributes,
    V1SelfSubjectAccessReview,
    V1SelfSubjectAccessReviewSpec,
)
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import installer
from istio_upgrade.activities.kube_client import (
    Kube,
    NotFound,
    Obj,
    ServerUnavailable,
    _retry_briefly,
)
from istio_upgrade.istio.naming import ISTIO_NAMESPACE
from istio_upgrade.models.activities import InstallInput
from istio_upgrade.models.permissions import (
    MAX_NAMESPACES_LISTED,
    RBAC_GROUP,
    AccessNeed,
    MissingPermission,
    PermissionReport,
    PermissionsInput,
    ResolvedObject,
    binding_need,
    object_needs,
    ondelete_needs,
    removal_needs,
    required_permissions,
)

REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MAX_RULES_SHOWN = 5

# (verb, group, resource, subresource, namespace, name) or ("nonResource", verb, path)
_Key = tuple[str, ...]


class _Unserved(Exception):
    """The API server does not serve SelfSubjectAccessReview."""


class Reviewer:
    """SelfSubjectAccessReviews through a ``Kube``'s client, each question asked once."""

    def __init__(self, kube: Kube, tick: Callable[[], None] | None = None) -> None:
        self.kube = kube
        self.api = AuthorizationV1Api(kube.api)
        self.tick = tick
        self.asked = 0
        self._answers: dict[_Key, bool] = {}

    def allowed(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str = "",
        namespace: str = "",
        name: str = "",
    ) -> bool:
        """Whether the worker may send this request (``namespace`` "": cluster-scoped, or every
        namespace at once)."""
        key = (verb, group, resource, subresource, namespace, name)
        if key not in self._answers:
            attributes = V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=resource,
                subresource=subresource or None,
                namespace=namespace or None,
                name=name or None,
            )
            self._answers[key] = self._ask(
                V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
            )
        return self._answers[key]

    def allowed_path(self, verb: str, path: str) -> bool:
        """Whether the worker may send ``verb`` to a non-resource URL."""
        key = ("nonResource", verb, path)
        if key not in self._answers:
            attributes = V1NonResourceAttributes(verb=verb, path=path)
            self._answers[key] = self._ask(
                V1SelfSubjectAccessReviewSpec(non_resource_attributes=attributes)
            )
        return self._answers[key]

    def _ask(self, spec: V1SelfSubjectAccessReviewSpec) -> bool:
        if self.tick is not None:
            self.tick()
        self.asked += 1
        try:
            return self._review(spec)
        except NotFound:
            raise _Unserved(f"cluster {self.kube.cluster} does not serve {REVIEW_PATH}") from None

    @_retry_briefly
    def _review(self, spec: V1SelfSubjectAccessReviewSpec) -> bool:
        with self.kube._lock:
            self.kube.requests += 1
        try:
            review: V1SelfSubjectAccessReview = self.api.create_self_subject_access_review(
                V1SelfSubjectAccessReview(spec=spec), _request_timeout=30
            )
        except ApiException as error:
            self.kube._translate(error, "POST", REVIEW_PATH)
            raise
        except urllib3.exceptions.HTTPError as error:
            # A dropped or refused connection: transient, retried like a 503 (kube_client).
            raise ServerUnavailable(f"POST {REVIEW_PATH}: connection failed ({error})") from error
        return bool(review.status is not None and review.status.allowed)


def _resolve(kube: Kube, obj: Obj) -> ResolvedObject | None:
    """The resource of a bundle object or inventory entry; None for a kind the cluster does
    not serve (the install itself reports that)."""
    api_version = str(obj.get("apiVersion") or "")
    kind = str(obj.get("kind") or "")
    name = str(obj.get("name") or (obj.get("metadata") or {}).get("name") or "")
    try:
        plural, namespaced = kube.resource(api_version, kind)
    except ApplicationError:
        return None
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return ResolvedObject(kind=kind, group=group, resource=plural, name=name, namespaced=namespaced)


def _bundle(kube: Kube, spec: PermissionsInput) -> list[Obj] | None:
    """The objects the install applies; None when the bundle is refused (``check_bundles``
    names why) or cannot be read."""
    install = InstallInput(
        cluster=spec.cluster,
        version=spec.version,
        revision=spec.target_revision,
        hub=spec.hub,
        installer=spec.installer,
        upgrade_id="precheck",
    )
    try:
        return installer.sorted_bundle(kube, install).revision
    except ApplicationError as error:
        # A refused bundle_configmap read is itself a missing permission, reported as such.
        if error.type in ("InvalidManifest", "UnknownKind", "Forbidden"):
            return None
        raise


def _breakdown(rules: list[Obj]) -> list[tuple[str, ...]]:
    """Every (verb, group, resource, subresource, name) or (verb, nonResourceURL) a role's
    rules grant, one by one, as ``BreakdownRule`` of the API server's escalation check."""
    out: list[tuple[str, ...]] = []
    for rule in rules:
        verbs = rule.get("verbs") or []
        for url in rule.get("nonResourceURLs") or []:
            out += [(verb, url) for verb in verbs]
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                base, _, sub = str(resource).partition("/")
                for verb in verbs:
                    for name in rule.get("resourceNames") or [""]:
                        out.append((verb, group, base, sub, name))
    return out


def _unheld(reviewer: Reviewer, rules: list[Obj], namespace: str) -> list[str]:
    """The rules of a role the worker does not hold, described."""
    missing: list[str] = []
    for item in _breakdown(rules):
        if len(item) == 2:
            verb, url = item
            if not reviewer.allowed_path(verb, url):
                missing.append(f"{verb} {url}")
            continue
        verb, group, resource, sub, name = item
        if not reviewer.allowed(verb, group, resource, sub, namespace, name):
            ref = f"{group or 'core'}/{resource}" + (f"/{sub}" if sub else "")
            missing.append(f"{verb} {ref}" + (f" named {name}" if name else ""))
    return missing


class _Missing:
    """Missing permissions, merged by request shape (one line per verb, resource and place)."""

    def __init__(self) -> None:
        self.found: dict[tuple[Any, ...], MissingPermission] = {}

    def add(
        self, need: AccessNeed, namespaces: list[str] | None = None, alternative: str = ""
    ) -> None:
        spaces = (
            namespaces
            if namespaces is not None
            else ([need.namespace] if need.scope == "namespace" else [])
        )
        key = (need.verb, need.group, need.resource, need.subresource, need.scope, tuple(spaces))
        previous = self.found.get(key)
        if previous is None:
            self.found[key] = MissingPermission(
                verb=need.verb,
                group=need.group,
                resource=need.resource,
                subresource=need.subresource,
                scope=need.scope,
                namespaces=spaces[:MAX_NAMESPACES_LISTED],
                more_namespaces=max(0, len(spaces) - MAX_NAMESPACES_LISTED),
                names=[need.name] if need.name else [],
                purpose=need.purpose,
                component=need.component,
                optional=need.optional,
                alternative=alternative,
            )
            return
        names = previous.names + (
            [need.name] if need.name and need.name not in previous.names else []
        )
        purpose = previous.purpose
        if need.purpose not in purpose.split("; "):
            purpose = f"{purpose}; {need.purpose}"
        self.found[key] = previous.model_copy(
            update={
                "names": names,
                "purpose": purpose,
                "optional": previous.optional and need.optional,
                "alternative": previous.alternative or alternative,
            }
        )


def check(
    kube: Kube, spec: PermissionsInput, tick: Callable[[], None] | None = None
) -> PermissionReport:
    """Ask the API server about every permission an upgrade of ``spec`` needs.

    Args:
        kube: Client of the cluster, with the worker's own credentials.
        spec: What the upgrade will do: its plan's namespaces, tags, bundle, removals.
        tick: Called before each review (the activity's heartbeat).

    Returns:
        The missing permissions, each with the step that needs it and what to grant;
        ``unchecked`` when the API server serves no SelfSubjectAccessReview.
    """
    reviewer = Reviewer(kube, tick)
    try:
        missing = _check(kube, reviewer, spec)
    except _Unserved as error:
        return PermissionReport(checked=reviewer.asked, unchecked=str(error))
    return PermissionReport(checked=reviewer.asked, missing=list(missing.found.values()))


def _needs(
    kube: Kube, spec: PermissionsInput, tick: Callable[[], None] | None = None
) -> tuple[list[AccessNeed], dict[tuple[str, str], list[Obj]]]:
    """Every permission of the upgrade, and the rules of the roles its bundle writes."""
    needs = required_permissions(spec)
    roles: dict[tuple[str, str], list[Obj]] = {}
    revision = spec.target_revision
    if spec.installer.strategy == "sail":
        # The operator renders and removes the revisions; the worker only changes its
        # resources (models/permissions.sail_needs) and migrates.
        return needs + ondelete_needs(_ondelete_namespaces(kube, spec.namespaces, tick)), roles
    if spec.installs:
        objects = _bundle(kube, spec) or []
        resolved = [(obj, _resolve(kube, obj)) for obj in objects]
        known = [r for _, r in resolved if r is not None]
        needs += object_needs(known, removes=spec.removes_target, revision=revision)
        for obj, ref in resolved:
            if ref is None or ref.group != RBAC_GROUP:
                continue
            if obj["kind"] in ("ClusterRole", "Role"):
                roles[(obj["kind"], ref.name)] = list(obj.get("rules") or [])
            elif obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                role = obj.get("roleRef") or {}
                needs.append(
                    binding_need(ref, str(role.get("kind")), str(role.get("name")), revision)
                )
    needs += ondelete_needs(_ondelete_namespaces(kube, spec.namespaces, tick))
    source = spec.source_revision
    if spec.removes_source and source and source != revision:
        try:
            listed = installer._revision_refs(kube, source)
        except ApplicationError as error:
            if error.type != "Forbidden":
                raise
            # Its inventory is unreadable (the missing get is reported): the chart's names.
            listed = installer._default_refs(source)
        refs = [_resolve(kube, ref) for ref in listed]
        needs += removal_needs([r for r in refs if r is not None], source)
    return needs, roles


def _ondelete_namespaces(
    kube: Kube, namespaces: list[str], tick: Callable[[], None] | None = None
) -> list[str]:
    """The namespaces of the plan that run an OnDelete StatefulSet or DaemonSet."""
    wanted = set(namespaces)
    found: set[str] = set()
    if not wanted:
        return []
    for kind in ("StatefulSet", "DaemonSet"):
        try:
            for obj in kube.list("apps/v1", kind, on_page=tick):
                namespace = (obj.get("metadata") or {}).get("namespace", "")
                strategy = (obj.get("spec") or {}).get("updateStrategy") or {}
                if namespace in wanted and strategy.get("type") == "OnDelete":
                    found.add(namespace)
        except ApplicationError as error:
            if error.type != "Forbidden":
                raise
            # Discovery lists them too: the missing list right refuses the upgrade anyway.
    return sorted(found)


def _check(kube: Kube, reviewer: Reviewer, spec: PermissionsInput) -> _Missing:
    needs, roles = _needs(kube, spec, reviewer.tick)
    missing = _Missing()
    seen: set[tuple[str, ...]] = set()
    for need in needs:
        key: tuple[str, ...] = (need.verb, need.group, need.resource, need.subresource)
        key += (need.scope, need.namespace, need.name)
        if key in seen:
            continue
        seen.add(key)
        if need.scope == "plan-namespaces":
            _check_plan(reviewer, spec, need, missing)
            continue
        namespace = need.namespace if need.scope == "namespace" else ""
        allowed = reviewer.allowed(
            need.verb, need.group, need.resource, need.subresource, namespace, need.name
        )
        if allowed:
            continue
        alternative = ""
        if need.verb in ("escalate", "bind"):
            kind = "ClusterRole" if need.resource == "clusterroles" else "Role"
            rules = roles.get((kind, need.name))
            if rules is not None:
                rule_ns = "" if kind == "ClusterRole" else ISTIO_NAMESPACE
                unheld = _unheld(reviewer, rules, rule_ns)
                if not unheld:
                    continue  # holding all the role grants is enough
                shown = ", ".join(unheld[:MAX_RULES_SHOWN])
                more = len(unheld) - MAX_RULES_SHOWN
                alternative = (
                    f"let it hold every rule of {kind} {need.name} (it lacks {shown}"
                    + (f" and {more} more" if more > 0 else "")
                    + ")"
                )
        missing.add(need, alternative=alternative)
    return missing


def _check_plan(
    reviewer: Reviewer, spec: PermissionsInput, need: AccessNeed, missing: _Missing
) -> None:
    """A permission needed in every namespace of the plan: cluster-wide, else each one."""
    if not spec.namespaces:
        return  # no plan yet (discovery was refused), or nothing to migrate
    if reviewer.allowed(need.verb, need.group, need.resource, need.subresource):
        return
    named = need.resource == "namespaces"  # a namespace is authorised in itself, by name
    denied = [
        ns
        for ns in spec.namespaces
        if not reviewer.allowed(
            need.verb, need.group, need.resource, need.subresource, ns, ns if named else ""
        )
    ]
    if denied:
        missing.add(need, namespaces=denied)


__all__ = ["REVIEW_PATH", "Reviewer", "check"]
