"""Kubernetes RBAC, evaluated over the Roles, ClusterRoles and bindings in the store.

Written from upstream, function for function:

- rule matching: ``pkg/apis/rbac/v1/evaluation_helpers.go`` (``VerbMatches``,
  ``APIGroupMatches``, ``ResourceMatches`` with ``*`` and ``*/subresource``,
  ``ResourceNameMatches``, ``NonResourceURLMatches``);
- the authorizer: ``plugin/pkg/auth/authorizer/rbac/rbac.go`` over
  ``pkg/registry/rbac/validation/rule.go`` (``VisitRulesFor``: every ClusterRoleBinding, then
  the RoleBindings of the request's namespace; a RoleBinding may reference a ClusterRole,
  whose rules then apply in the binding's namespace only; subjects User, Group and
  ServiceAccount), with its ``RBAC: allowed by ...`` reasons and resolution errors;
- escalation prevention: ``ConfirmNoEscalation`` with ``Covers``/``BreakdownRule``
  (``k8s.io/component-helpers/auth/rbac/validation/policy_comparator.go``), ``CompactRules``
  and ``CompactString`` for the message;
- the 403 message of ``k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go``
  (``forbiddenMessage``) wrapped as ``apierrors.NewForbidden``.

``system:masters`` is allowed everything before RBAC is consulted, as kube-apiserver's
privileged-group authorizer does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from istio_sandbox.identity import SA_PREFIX, SYSTEM_MASTERS, UserInfo
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import NotFound, Obj, Store

GROUP = "rbac.authorization.k8s.io"
ROLES = BY_KEY[f"{GROUP}/roles"]
CLUSTER_ROLES = BY_KEY[f"{GROUP}/clusterroles"]
ROLE_BINDINGS = BY_KEY[f"{GROUP}/rolebindings"]
CLUSTER_ROLE_BINDINGS = BY_KEY[f"{GROUP}/clusterrolebindings"]
RBAC_KEYS = frozenset(rt.key for rt in (ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS))

Rule = dict[str, Any]


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string (close enough: JSON escaping of the same characters)."""
    return json.dumps(value, ensure_ascii=False)


def go_quote_list(values: list[str] | tuple[str, ...]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def aggregate_errors(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one message, or ``[a, b]`` deduplicated."""
    unique = list(dict.fromkeys(errors))
    if len(errors) == 1 or len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


@dataclass(frozen=True)
class Attributes:
    """``authorizer.Attributes`` of one request or access review."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


# -- rule matching (evaluation_helpers.go) ----------------------------------------------------


def _strings(rule: Rule, key: str) -> list[str]:
    return [str(v) for v in rule.get(key) or []]


def verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in ("*", verb) for v in _strings(rule, "verbs"))


def api_group_matches(rule: Rule, group: str) -> bool:
    return any(g in ("*", group) for g in _strings(rule, "apiGroups"))


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for r in _strings(rule, "resources"):
        if r in ("*", combined):
            return True
        if not subresource:
            continue
        if len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    names = _strings(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: Rule, url: str) -> bool:
    for u in _strings(rule, "nonResourceURLs"):
        if u in ("*", url):
            return True
        if u.endswith("*") and url.startswith(u.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Rule) -> bool:
    if attrs.resource_request:
        combined = attrs.resource
        if attrs.subresource:
            combined = f"{attrs.resource}/{attrs.subresource}"
        return (
            verb_matches(rule, attrs.verb)
            and api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, combined, attrs.subresource)
            and resource_name_matches(rule, attrs.name)
        )
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# -- rule resolution (registry/rbac/validation/rule.go) ---------------------------------------


class RoleLookupError(Exception):
    """A binding's role could not be resolved."""


def _applies_to_user(user: UserInfo, subject: Obj, namespace: str) -> bool:
    kind = subject.get("kind")
    name = str(subject.get("name") or "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_ns = str(subject.get("namespace") or "") or namespace
        if not sa_ns:
            return False
        return user.name == f"{SA_PREFIX}{sa_ns}:{name}"
    return False


def _describe_subject(subject: Obj, binding_namespace: str) -> str:
    kind = str(subject.get("kind") or "")
    name = str(subject.get("name") or "")
    if kind == "ServiceAccount":
        ns = str(subject.get("namespace") or "") or binding_namespace
        return f"{kind} {go_quote(name + '/' + ns)}"
    return f"{kind} {go_quote(name)}"


def role_reference_rules(
    store: Store, role_ref: Obj, namespace: str, *, lister_errors: bool = True
) -> list[Rule]:
    """``GetRoleReferenceRules``: the rules a binding's ``roleRef`` grants.

    Raises:
        RoleLookupError: with the lister's message (``clusterrole.rbac.authorization.k8s.io
            "x" not found``) when ``lister_errors``.
        NotFound: the store's own 404 (``clusterroles.rbac...``) otherwise, as the binding
            registry returns it.
    """
    kind = role_ref.get("kind")
    name = str(role_ref.get("name") or "")
    if kind == "Role":
        rt, ns, singular = ROLES, namespace, "role"
    elif kind == "ClusterRole":
        rt, ns, singular = CLUSTER_ROLES, "", "clusterrole"
    else:
        raise RoleLookupError(f"unsupported role reference kind: {go_quote(str(kind))}")
    role = store.try_get(rt, ns, name) if (ns or not rt.namespaced) else None
    if role is None:
        if lister_errors:
            raise RoleLookupError(f"{singular}.{GROUP} {go_quote(name)} not found")
        store.get(rt, ns, name)  # raises the registry's NotFound
    assert role is not None
    return [r for r in role.get("rules") or [] if isinstance(r, dict)]


def visit_rules_for(
    store: Store, user: UserInfo, namespace: str, *, lister_errors: bool = True
) -> Iterator[tuple[str, Rule | None, str | None]]:
    """``VisitRulesFor``: (source, rule, error) for every rule that applies to ``user`` in
    ``namespace`` ("" = cluster-wide bindings only), lazily, in upstream's order."""
    for binding in store.list(CLUSTER_ROLE_BINDINGS, copy_objects=False):
        subjects = [s for s in binding.get("subjects") or [] if isinstance(s, dict)]
        subject = next((s for s in subjects if _applies_to_user(user, s, "")), None)
        if subject is None:
            continue
        ref = binding.get("roleRef") or {}
        try:
            rules = role_reference_rules(store, ref, "", lister_errors=lister_errors)
        except RoleLookupError as err:
            yield "", None, str(err)
            continue
        except NotFound as err:
            yield "", None, err.message
            continue
        source = (
            f"ClusterRoleBinding {go_quote(binding['metadata']['name'])} of "
            f"{ref.get('kind', '')} {go_quote(str(ref.get('name', '')))} to "
            f"{_describe_subject(subject, '')}"
        )
        for rule in rules:
            yield source, rule, None
    if not namespace:
        return
    for binding in store.list(ROLE_BINDINGS, namespace, copy_objects=False):
        subjects = [s for s in binding.get("subjects") or [] if isinstance(s, dict)]
        subject = next((s for s in subjects if _applies_to_user(user, s, namespace)), None)
        if subject is None:
            continue
        ref = binding.get("roleRef") or {}
        try:
            rules = role_reference_rules(store, ref, namespace, lister_errors=lister_errors)
        except RoleLookupError as err:
            yield "", None, str(err)
            continue
        except NotFound as err:
            yield "", None, err.message
            continue
        source = (
            f"RoleBinding {go_quote(binding['metadata']['name'] + '/' + namespace)} of "
            f"{ref.get('kind', '')} {go_quote(str(ref.get('name', '')))} to "
            f"{_describe_subject(subject, namespace)}"
        )
        for rule in rules:
            yield source, rule, None


def rules_for(
    store: Store, user: UserInfo, namespace: str, *, lister_errors: bool = True
) -> tuple[list[Rule], list[str]]:
    """``RulesFor``: every rule that applies, and the resolution errors met."""
    rules: list[Rule] = []
    errors: list[str] = []
    for _, rule, err in visit_rules_for(store, user, namespace, lister_errors=lister_errors):
        if rule is not None:
            rules.append(rule)
        if err:
            errors.append(err)
    return rules, errors


def rbac_authorize(store: Store, attrs: Attributes) -> Decision:
    """The RBAC authorizer alone: allowed with its reason, or no opinion (denied)."""
    errors: list[str] = []
    for source, rule, err in visit_rules_for(store, attrs.user, attrs.namespace):
        if rule is not None and rule_allows(attrs, rule):
            return Decision(True, f"RBAC: allowed by {source}")
        if err:
            errors.append(err)
    return Decision(False, f"RBAC: {aggregate_errors(errors)}" if errors else "")


def authorize(store: Store, attrs: Attributes, enforced: bool) -> Decision:
    """kube-apiserver's authorizer chain: everything when RBAC is off, ``system:masters``
    always, then RBAC."""
    if not enforced or SYSTEM_MASTERS in attrs.user.groups:
        return Decision(True, "")
    return rbac_authorize(store, attrs)


# -- the 403 answer (responsewriters/errors.go) -----------------------------------------------


def forbidden(attrs: Attributes, reason: str = "") -> tuple[str, dict[str, Any]]:
    """Message and ``details`` of the 403 Status for a denied request."""
    username = attrs.user.name
    if not attrs.resource_request:
        msg = f"User {go_quote(username)} cannot {attrs.verb} path {go_quote(attrs.path)}"
    else:
        resource = attrs.resource
        if attrs.subresource:
            resource = f"{resource}/{attrs.subresource}"
        msg = (
            f"User {go_quote(username)} cannot {attrs.verb} resource {go_quote(resource)} "
            f"in API group {go_quote(attrs.api_group)}"
        )
        if attrs.namespace:
            msg += f" in the namespace {go_quote(attrs.namespace)}"
        else:
            msg += " at the cluster scope"
    err = f"{msg}: {reason}" if reason else msg
    group = attrs.api_group if attrs.resource_request else ""
    resource = attrs.resource if attrs.resource_request else ""
    name = attrs.name if attrs.resource_request else ""
    return forbidden_status(group, resource, name, err)


def forbidden_status(group: str, resource: str, name: str, err: str) -> tuple[str, dict[str, Any]]:
    """``apierrors.NewForbidden(GroupResource{group, resource}, name, err)``."""
    qualified = f"{resource}.{group}" if group else resource
    if not qualified:
        message = f"forbidden: {err}"
    elif not name:
        message = f"{qualified} is forbidden: {err}"
    else:
        message = f"{qualified} {go_quote(name)} is forbidden: {err}"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    return message, details


# -- escalation prevention (policy_comparator.go, policy_compact.go, rule.go) -----------------


def breakdown_rule(rule: Rule) -> list[Rule]:
    """Equivalent rules of one group, resource, verb and (maybe) resource name each."""
    out: list[Rule] = []
    names = _strings(rule, "resourceNames")
    for group in _strings(rule, "apiGroups"):
        for resource in _strings(rule, "resources"):
            for verb in _strings(rule, "verbs"):
                if names:
                    for name in names:
                        out.append(
                            {
                                "apiGroups": [group],
                                "resources": [resource],
                                "verbs": [verb],
                                "resourceNames": [name],
                            }
                        )
                else:
                    out.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    for url in _strings(rule, "nonResourceURLs"):
        for verb in _strings(rule, "verbs"):
            out.append({"nonResourceURLs": [url], "verbs": [verb]})
    return out


def _resource_covers_all(owned: list[str], wanted: list[str]) -> bool:
    if "*" in owned or set(wanted) <= set(owned):
        return True
    for path in wanted:
        if path in owned:
            continue
        if "/" not in path:
            return False
        if "*/" + path.split("/", 1)[1] not in owned:
            return False
    return True


def _non_resource_urls_cover_all(owned: list[str], wanted: list[str]) -> bool:
    for path in wanted:
        if not any(
            o == path or (o.endswith("*") and path.startswith(o.rstrip("*"))) for o in owned
        ):
            return False
    return True


def rule_covers(owner: Rule, sub: Rule) -> bool:
    owner_verbs, owner_groups = _strings(owner, "verbs"), _strings(owner, "apiGroups")
    verbs = "*" in owner_verbs or set(_strings(sub, "verbs")) <= set(owner_verbs)
    groups = "*" in owner_groups or set(_strings(sub, "apiGroups")) <= set(owner_groups)
    resources = _resource_covers_all(_strings(owner, "resources"), _strings(sub, "resources"))
    urls = _non_resource_urls_cover_all(
        _strings(owner, "nonResourceURLs"), _strings(sub, "nonResourceURLs")
    )
    owner_names, sub_names = _strings(owner, "resourceNames"), _strings(sub, "resourceNames")
    if not sub_names:
        names = not owner_names
    else:
        names = not owner_names or set(sub_names) <= set(owner_names)
    return verbs and groups and resources and names and urls


def covers(owner_rules: list[Rule], servant_rules: list[Rule]) -> tuple[bool, list[Rule]]:
    """Whether ``owner_rules`` allow everything ``servant_rules`` do; and what they miss."""
    missing = [
        sub
        for rule in servant_rules
        for sub in breakdown_rule(rule)
        if not any(rule_covers(owner, sub) for owner in owner_rules)
    ]
    return not missing, missing


def compact_rules(rules: list[Rule]) -> list[Rule]:
    """Merge single-group, single-resource rules that differ only by verb."""
    compacted: list[Rule] = []
    simple: dict[tuple[str, str], Rule] = {}
    for rule in rules:
        groups, resources = _strings(rule, "apiGroups"), _strings(rule, "resources")
        is_simple = (
            not rule.get("resourceNames")
            and not rule.get("nonResourceURLs")
            and len(groups) == 1
            and len(resources) == 1
        )
        if not is_simple:
            compacted.append(rule)
            continue
        key = (groups[0], resources[0])
        if key in simple:
            simple[key]["verbs"] = [*simple[key].get("verbs", []), *_strings(rule, "verbs")]
        else:
            simple[key] = {
                "apiGroups": groups,
                "resources": resources,
                "verbs": _strings(rule, "verbs"),
            }
    return compacted + list(simple.values())


def compact_string(rule: Rule) -> str:
    """``rbacv1helpers.CompactString``: ``{APIGroups:["apps"], Resources:["deployments"],
    Verbs:["get" "list"]}``."""
    parts = []
    for key, label in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ):
        values = _strings(rule, key)
        if values:
            parts.append(f"{label}:{go_quote_list(values)}")
    return "{" + ", ".join(parts) + "}"


def confirm_no_escalation(
    store: Store, user: UserInfo, namespace: str, rules: list[Rule]
) -> str | None:
    """``ConfirmNoEscalation``: None when ``user`` holds every rule in ``rules`` in
    ``namespace``; otherwise the error naming what is missing."""
    owner, errors = rules_for(store, user, namespace, lister_errors=False)
    ok, missing = covers(owner, rules)
    if ok:
        return None
    described = sorted({compact_string(r) for r in compact_rules(missing)})
    msg = (
        f"user {go_quote(user.name)} (groups={go_quote_list(user.groups)}) is attempting to "
        f"grant RBAC permissions not currently held:\n" + "\n".join(described)
    )
    if errors:
        msg += f"; resolution errors: [{aggregate_errors(errors)}]"
    return msg


FULL_AUTHORITY: list[Rule] = [
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
]
"""What setting an ``aggregationRule`` requires (``clusterrole/policybased/storage.go``)."""
