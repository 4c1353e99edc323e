"""Sandbox admin endpoints: health, request accounting and the request log, live fault
control, bearer tokens and the RBAC switch.

These are never faulted, counted, logged, authenticated or authorized, so tests can
reconfigure a sandbox that is failing (or forbidding) every API call.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.api.validation import dns1123_label_errors, dns1123_subdomain_errors
from istio_sandbox.cluster import Cluster
from istio_sandbox.faults import Faults
from istio_sandbox.identity import UserInfo, service_account_user, user_with_groups

REQUESTS_PAGE = 100_000
"""Most entries one ``GET /sandbox/requests`` returns unless ``limit`` says otherwise."""

CLUSTER_KEY: web.AppKey[Cluster] = web.AppKey("cluster", Cluster)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    acc = request.app[CLUSTER_KEY].accounting
    rows = [
        {"verb": verb, "resource": resource, "namespace": namespace, "count": count}
        for (verb, resource, namespace), count in sorted(acc.requests.items())
    ]
    return json_response(
        {"total": sum(acc.requests.values()), "writes": acc.writes, "requests": rows}
    )


async def stats_reset(request: web.Request) -> web.Response:
    request.app[CLUSTER_KEY].accounting.reset()
    return json_response({"total": 0, "writes": 0, "requests": []})


async def requests(request: web.Request) -> web.Response:
    """``GET /sandbox/requests?since=<seq>&limit=<n>``: the request log from ``since`` on."""
    since = _int_param(request, "since", 0)
    limit = _int_param(request, "limit", REQUESTS_PAGE)
    entries, nxt = request.app[CLUSTER_KEY].accounting.log.since(since, limit)
    return json_response({"next": nxt, "requests": entries})


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError.bad_request(f"{name}: Invalid value: {raw!r}: must be an integer") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as err:
        raise ApiError.bad_request(f"the request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError.bad_request("the request body must be a JSON object")
    return body


def token_subject(body: dict[str, Any]) -> UserInfo:
    """Whom a ``POST /sandbox/tokens`` body asks a token for.

    Raises:
        ApiError: 400 unless exactly one of ``user`` (with optional ``groups``) and
            ``serviceAccount`` (``{"namespace", "name"}``) is given, well formed.
    """
    user, sa = body.get("user"), body.get("serviceAccount")
    if (user is None) == (sa is None):
        raise ApiError.bad_request(
            'give exactly one of "user" (with optional "groups") or "serviceAccount" '
            '({"namespace": ..., "name": ...})'
        )
    if sa is not None:
        if not isinstance(sa, dict) or "groups" in body:
            raise ApiError.bad_request(
                'serviceAccount must be {"namespace": ..., "name": ...}; its groups are '
                "system:serviceaccounts, system:serviceaccounts:<namespace> and "
                "system:authenticated"
            )
        ns, name = str(sa.get("namespace") or ""), str(sa.get("name") or "")
        problems = [f"namespace {ns!r}: {e}" for e in dns1123_label_errors(ns)]
        problems += [f"name {name!r}: {e}" for e in dns1123_subdomain_errors(name)]
        if problems:
            raise ApiError.bad_request("serviceAccount " + "; ".join(problems))
        return service_account_user(ns, name)
    groups = body.get("groups") or []
    if not isinstance(user, str) or not user:
        raise ApiError.bad_request("user must be a non-empty string")
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ApiError.bad_request("groups must be a list of non-empty strings")
    return user_with_groups(user, groups)


async def issue_token(request: web.Request) -> web.Response:
    """``POST /sandbox/tokens``: a bearer token for a user or a ServiceAccount."""
    subject = token_subject(await _json_body(request))
    token = request.app[CLUSTER_KEY].tokens.issue(subject)
    return json_response({"token": token, **subject.to_json()}, status=201)


async def get_rbac(request: web.Request) -> web.Response:
    return json_response({"enforced": request.app[CLUSTER_KEY].rbac_enforced})


async def put_rbac(request: web.Request) -> web.Response:
    """``PUT /sandbox/rbac {"enforced": true|false}``: switch RBAC authorization live."""
    body = await _json_body(request)
    enforced = body.get("enforced")
    if not isinstance(enforced, bool):
        raise ApiError.bad_request('the body must be {"enforced": true} or {"enforced": false}')
    request.app[CLUSTER_KEY].rbac_enforced = enforced
    return json_response({"enforced": enforced})


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[CLUSTER_KEY].faults.model_dump(mode="json"))


async def put_faults(request: web.Request) -> web.Response:
    try:
        faults = Faults.model_validate_json(await request.read())
    except ValidationError as err:
        raise ApiError.bad_request(f"invalid Faults document: {err}") from None
    _replace(request.app[CLUSTER_KEY], faults)
    return json_response(faults.model_dump(mode="json"))


async def clear_faults(request: web.Request) -> web.Response:
    _replace(request.app[CLUSTER_KEY], Faults())
    return json_response(Faults().model_dump(mode="json"))


def _replace(cluster: Cluster, faults: Faults) -> None:
    # In place: controllers and the mesh model may hold the Faults object itself.
    cluster.faults.api = faults.api
    cluster.faults.rollouts = faults.rollouts
    cluster.faults.traffic = faults.traffic
    cluster.faults.labels = faults.labels


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/sandbox/stats", stats)
    app.router.add_post("/sandbox/stats/reset", stats_reset)
    app.router.add_get("/sandbox/requests", requests)
    app.router.add_post("/sandbox/tokens", issue_token)
    app.router.add_get("/sandbox/rbac", get_rbac)
    app.router.add_put("/sandbox/rbac", put_rbac)
    app.router.add_get("/sandbox/faults", get_faults)
    app.router.add_put("/sandbox/faults", put_faults)
    app.router.add_post("/sandbox/faults/clear", clear_faults)
