"""Authentication, authorization and the request log, in the HTTP layer.

The filter chain of kube-apiserver, reduced to what the sandbox needs:

1. the request's attributes (:mod:`istio_sandbox.api.requestinfo`);
2. authentication: no ``Authorization`` header is ``system:admin`` (``system:masters``), a
   bearer token from ``POST /sandbox/tokens`` is its user or ServiceAccount, anything else
   is a 401 ``Unauthorized`` Status;
3. authorization by :func:`istio_sandbox.rbac.authorize` (everything is allowed unless RBAC
   is enforced), a denial being the API server's 403 ``Forbidden`` Status;
4. for writes of Roles, ClusterRoles and their bindings, RBAC's escalation prevention
   (:func:`check_rbac_write`, called by the handlers with the object about to be stored).

Admin endpoints (``/sandbox/...``, ``/healthz``) and the mesh's ``/metrics`` skip all of it.
Every resource request is appended to the request log when its answer is sent
(:func:`log_answer`, an ``on_response_prepare`` hook), with the caller and the status code.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from istio_sandbox import rbac
from istio_sandbox.api.admin import CLUSTER_KEY
from istio_sandbox.api.errors import ApiError
from istio_sandbox.api.requestinfo import RequestInfo, parse_request_info
from istio_sandbox.api.target import Target
from istio_sandbox.cluster import Cluster
from istio_sandbox.identity import ADMIN, SYSTEM_MASTERS, UserInfo
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import Obj

INFO_KEY: web.RequestKey[RequestInfo] = web.RequestKey("sandbox_request_info", RequestInfo)
USER_KEY: web.RequestKey[UserInfo] = web.RequestKey("sandbox_user", UserInfo)
_LOGGED_KEY: web.RequestKey[bool] = web.RequestKey("sandbox_logged", bool)

SERVICEACCOUNTS = BY_KEY["/serviceaccounts"]
_EXEMPT = ("/healthz", "/metrics")


def _exempt(path: str) -> bool:
    return path in _EXEMPT or path.startswith("/sandbox/") or path == "/sandbox"


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", reason="Unauthorized")


def authenticate_request(cluster: Cluster, request: web.Request) -> UserInfo:
    """The caller of ``request``.

    Raises:
        ApiError: 401 for a token nobody issued, a ServiceAccount token whose ServiceAccount
            no longer exists, or credentials other than a bearer token.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return ADMIN
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized()
    user = cluster.tokens.lookup(token)
    if user is None:
        raise unauthorized()
    if user.service_account is not None:
        ns, name = user.service_account
        if cluster.store.try_get(SERVICEACCOUNTS, ns, name) is None:
            raise unauthorized()
    return user


def attributes(user: UserInfo, info: RequestInfo) -> rbac.Attributes:
    return rbac.Attributes(
        user=user,
        verb=info.verb,
        resource_request=info.is_resource_request,
        api_group=info.api_group,
        api_version=info.api_version,
        resource=info.resource,
        subresource=info.subresource,
        namespace=info.namespace,
        name=info.name,
        path=info.path,
    )


def require(cluster: Cluster, attrs: rbac.Attributes) -> None:
    """Raise the 403 Status unless ``attrs`` are authorized."""
    decision = rbac.authorize(cluster.store, attrs, cluster.rbac_enforced)
    if not decision.allowed:
        message, details = rbac.forbidden(attrs, decision.reason)
        raise ApiError(403, message, reason="Forbidden", details=details)


def authorize_request(request: web.Request) -> None:
    """Authorize a resource request (403 when denied)."""
    cluster = request.app[CLUSTER_KEY]
    require(cluster, attributes(request[USER_KEY], request[INFO_KEY]))


def request_user(request: web.Request) -> UserInfo:
    return request.get(USER_KEY) or ADMIN


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Parse the request's attributes and authenticate its caller; authorize non-resource
    requests (discovery, ``/version``, OpenAPI) here, resource requests in the handler."""
    if _exempt(request.path):
        response: web.StreamResponse = await handler(request)
        return response
    info = parse_request_info(request.method, request.path, request.query)
    request[INFO_KEY] = info
    cluster = request.app[CLUSTER_KEY]
    request[USER_KEY] = authenticate_request(cluster, request)
    if not info.is_resource_request:
        require(cluster, attributes(request[USER_KEY], info))
    response = await handler(request)
    return response


def _append(request: web.Request, code: int) -> None:
    info = request.get(INFO_KEY)
    if info is None or not info.is_resource_request or request.get(_LOGGED_KEY):
        return
    request[_LOGGED_KEY] = True
    user = request.get(USER_KEY)
    request.app[CLUSTER_KEY].accounting.log.append(
        verb=info.verb,
        api_group=info.api_group,
        resource=info.resource,
        subresource=info.subresource,
        namespace=info.namespace,
        name=info.name,
        user=user.name if user is not None else "",
        code=code,
    )


async def log_answer(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: log a resource request as its status line goes out."""
    _append(request, response.status)


def log_dropped(request: web.Request) -> None:
    """Log a request whose connection a ``drop`` fault closed: code 0, no answer."""
    _append(request, 0)


# -- escalation prevention --------------------------------------------------------------------

_GC_META = (
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
)


def _only_gc_fields(new: Obj, old: Obj) -> bool:
    """``rbacregistry.IsOnlyMutatingGCFields``: only owner references/finalizers differ."""

    def strip(obj: Obj) -> Obj:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _GC_META}
        rest = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
        return {"metadata": meta, **rest}

    return strip(new) == strip(old)


def _allowed(cluster: Cluster, attrs: rbac.Attributes) -> bool:
    return rbac.authorize(cluster.store, attrs, cluster.rbac_enforced).allowed


def _forbidden(plural: str, name: str, err: str) -> ApiError:
    message, details = rbac.forbidden_status(rbac.GROUP, plural, name, err)
    return ApiError(403, message, reason="Forbidden", details=details)


def check_rbac_write(request: web.Request, target: Target, obj: Obj, old: Obj | None) -> None:
    """RBAC's escalation prevention for a create (``old`` None) or update of a Role,
    ClusterRole, RoleBinding or ClusterRoleBinding (``pkg/registry/rbac/*/policybased``).

    Raises:
        ApiError: 403 when the caller would grant permissions it does not hold and may not
            ``escalate`` (roles) or ``bind`` (bindings); 404 when a binding's role is missing.
    """
    if target.rt.key not in rbac.RBAC_KEYS:
        return
    cluster = request.app[CLUSTER_KEY]
    user = request_user(request)
    if not cluster.rbac_enforced or SYSTEM_MASTERS in user.groups:
        return
    info = request[INFO_KEY]
    store = cluster.store
    namespace = target.namespace
    plural = target.rt.plural
    name = str((obj.get("metadata") or {}).get("name") or target.name)
    if plural in ("roles", "clusterroles"):
        escalate = rbac.Attributes(
            user=user,
            verb="escalate",
            api_group=info.api_group,
            api_version="*",
            resource=info.resource,
            name=info.name,
            namespace=info.namespace,
        )
        if _allowed(cluster, escalate):
            return
        if old is not None and _only_gc_fields(obj, old):
            return
        rules = [r for r in obj.get("rules") or [] if isinstance(r, dict)]
        err = rbac.confirm_no_escalation(store, user, namespace, rules)
        if err:
            raise _forbidden(plural, name, err)
        aggregated = obj.get("aggregationRule") or (old or {}).get("aggregationRule")
        if (
            plural == "clusterroles"
            and (aggregated or {}).get("clusterRoleSelectors")
            and rbac.confirm_no_escalation(store, user, namespace, rbac.FULL_AUTHORITY)
        ):
            raise _forbidden(
                plural, name, "must have cluster-admin privileges to use the aggregationRule"
            )
        return
    if old is not None and _only_gc_fields(obj, old):
        return
    ref = obj.get("roleRef") or {}
    ref_kind = ref.get("kind")
    bind = rbac.Attributes(
        user=user,
        verb="bind",
        api_group=str(ref.get("apiGroup") or ""),
        resource="roles" if ref_kind == "Role" else "clusterroles",
        name=str(ref.get("name") or ""),
        namespace=namespace,
    )
    if ref_kind in ("Role", "ClusterRole") and _allowed(cluster, bind):
        return
    try:
        rules = rbac.role_reference_rules(store, ref, namespace, lister_errors=False)
    except rbac.RoleLookupError as lookup:
        raise ApiError(500, f"Internal error occurred: {lookup}") from None
    missing = rbac.confirm_no_escalation(store, user, namespace, rules)
    if missing:
        raise _forbidden(plural, name, missing)
