"""``authorization.k8s.io/v1`` access reviews: questions to the authorizer, never stored.

- ``selfsubjectaccessreviews``: may the caller do this? (``kubectl auth can-i``)
- ``subjectaccessreviews`` / ``namespaces/<ns>/localsubjectaccessreviews``: may this user
  or these groups do it? (for admins: RBAC requires ``create`` on them)
- ``selfsubjectrulesreviews``: what may the caller do in a namespace?
  (``kubectl auth can-i --list``)

Answers come from the same authorizer as requests (:func:`istio_sandbox.rbac.authorize`):
with RBAC off, everything is allowed. Validation and wording follow
``pkg/apis/authorization/validation`` and ``pkg/registry/authorization``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from istio_sandbox import rbac
from istio_sandbox.api.authz import request_user
from istio_sandbox.api.body import read_object
from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.api.target import Target
from istio_sandbox.cluster import Cluster
from istio_sandbox.identity import UserInfo

GROUP = "authorization.k8s.io"


def _invalid(kind: str, field: str, value: str, detail: str) -> ApiError:
    cause = f"Invalid value: {value}: {detail}"
    return ApiError(
        422,
        f'{kind}.{GROUP} "" is invalid: {field}: {cause}',
        reason="Invalid",
        details={
            "group": GROUP,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}],
        },
    )


def _attributes(kind: str, user: UserInfo, spec: dict[str, Any]) -> rbac.Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise _invalid(
            kind,
            "spec.nonResourceAttributes",
            rbac.go_quote(str(non_resource)),
            "cannot be specified in combination with resourceAttributes",
        )
    if resource is None and non_resource is None:
        raise _invalid(
            kind,
            "spec.resourceAttributes",
            '"null"',
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )
    if resource is not None:
        if not isinstance(resource, dict):
            raise ApiError.bad_request("spec.resourceAttributes must be an object")
        return rbac.Attributes(
            user=user,
            verb=str(resource.get("verb") or ""),
            resource_request=True,
            api_group=str(resource.get("group") or ""),
            api_version=str(resource.get("version") or ""),
            resource=str(resource.get("resource") or ""),
            subresource=str(resource.get("subresource") or ""),
            namespace=str(resource.get("namespace") or ""),
            name=str(resource.get("name") or ""),
        )
    if not isinstance(non_resource, dict):
        raise ApiError.bad_request("spec.nonResourceAttributes must be an object")
    return rbac.Attributes(
        user=user,
        verb=str(non_resource.get("verb") or ""),
        resource_request=False,
        path=str(non_resource.get("path") or ""),
    )


def _answer(body: dict[str, Any], target: Target, status: dict[str, Any]) -> web.Response:
    meta = dict(body.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    return json_response(
        {
            "kind": target.rt.kind,
            "apiVersion": target.rt.api_version,
            "metadata": meta,
            "spec": body.get("spec") or {},
            "status": status,
        },
        status=201,
    )


def _rules_status(cluster: Cluster, user: UserInfo, namespace: str) -> dict[str, Any]:
    """``SelfSubjectRulesReviewStatus`` from RBAC's ``RulesFor``."""
    if not cluster.rbac_enforced:
        return {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    rules, errors = rbac.rules_for(cluster.store, user, namespace)
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for rule in rules:
        if rule.get("resources"):
            entry: dict[str, Any] = {
                "verbs": list(rule.get("verbs") or []),
                "apiGroups": list(rule.get("apiGroups") or []),
                "resources": list(rule.get("resources") or []),
            }
            if rule.get("resourceNames"):
                entry["resourceNames"] = list(rule["resourceNames"])
            resource_rules.append(entry)
        if rule.get("nonResourceURLs"):
            non_resource_rules.append(
                {
                    "verbs": list(rule.get("verbs") or []),
                    "nonResourceURLs": list(rule["nonResourceURLs"]),
                }
            )
    status: dict[str, Any] = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": False,
    }
    if errors:
        status["evaluationError"] = rbac.aggregate_errors(errors)
    return status


async def create(request: web.Request, cluster: Cluster, target: Target) -> web.Response:
    """Answer one access review (``POST`` only; nothing is stored)."""
    kind, plural = target.rt.kind, target.rt.plural
    if request.method != "POST" or target.name:
        raise ApiError(
            405,
            f"the server does not allow this method on the requested resource "
            f"({request.method} {plural})",
        )
    body = await read_object(request)
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise ApiError.bad_request("spec must be an object")
    caller = request_user(request)
    if plural == "selfsubjectrulesreviews":
        namespace = str(spec.get("namespace") or "")
        return _answer(body, target, _rules_status(cluster, caller, namespace))
    if plural == "selfsubjectaccessreviews":
        subject = caller
    else:
        user = str(spec.get("user") or "")
        groups = tuple(str(g) for g in spec.get("groups") or [])
        if not user and not groups:
            raise _invalid(
                kind, "spec.user", '""', "at least one of user or group must be specified"
            )
        subject = UserInfo(user, groups)
    attrs = _attributes(kind, subject, spec)
    if plural == "localsubjectaccessreviews":
        if not attrs.resource_request and spec.get("nonResourceAttributes") is not None:
            raise _invalid(
                kind,
                "spec.nonResourceAttributes",
                rbac.go_quote(str(spec["nonResourceAttributes"])),
                "disallowed on this kind of request",
            )
        if attrs.namespace != target.namespace:
            raise ApiError.bad_request(
                f"spec.resourceAttributes.namespace must match namespace: {target.namespace}"
            )
    decision = rbac.authorize(cluster.store, attrs, cluster.rbac_enforced)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return _answer(body, target, status)
