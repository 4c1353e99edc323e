"""Sandbox admin endpoints: health, request accounting and live fault control.

These are never faulted and never counted, so tests can reconfigure a sandbox that is
failing every API call.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.cluster import Cluster
from istio_sandbox.faults import Faults

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
    app.router.add_get("/sandbox/faults", get_faults)
    app.router.add_put("/sandbox/faults", put_faults)
    app.router.add_post("/sandbox/faults/clear", clear_faults)
