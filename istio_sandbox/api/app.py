"""Assembly of the sandbox's Kubernetes API server as an aiohttp application."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from istio_sandbox.api import (
    admin,
    authz,
    discovery,
    events,
    handlers,
    openapi,
    reviews,
    subresources,
)
from istio_sandbox.api.admin import CLUSTER_KEY
from istio_sandbox.api.errors import ApiError
from istio_sandbox.api.faults import DroppedConnection, inject
from istio_sandbox.api.target import Target, resolve
from istio_sandbox.api.watch import serve_watch
from istio_sandbox.cluster import Cluster
from istio_sandbox.store import StoreError

_log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_METHODS_ON_ITEM = ("GET", "PUT", "PATCH", "DELETE")
_METHODS_ON_COLLECTION = ("GET", "POST", "DELETE")


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as a ``kind: Status`` body."""
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except StoreError as err:
        return ApiError.from_store(err).response()
    except web.HTTPMethodNotAllowed as err:
        return ApiError(405, f"the server does not allow this method ({err.method})").response()
    except web.HTTPNotFound:
        return ApiError(
            404, "the server could not find the requested resource", details={}
        ).response()
    except DroppedConnection:
        # The transport is closed; aiohttp discards whatever is returned.
        authz.log_dropped(request)
        return web.Response(status=500)
    except web.HTTPException:
        raise
    except Exception as err:
        # A bug here must still reach clients as a Status they can parse, not an HTML page.
        _log.exception("unhandled error serving %s %s", request.method, request.path)
        return ApiError(500, f"Internal error occurred: {err!r}").response()


def _is_watch(request: web.Request, target: Target) -> bool:
    return target.legacy_watch or request.query.get("watch", "").lower() in ("true", "1")


async def resource(request: web.Request) -> web.StreamResponse:
    """Dispatch one ``/api/...`` or ``/apis/...`` resource request."""
    cluster = request.app[CLUSTER_KEY]
    missing = ApiError(404, "the server could not find the requested resource", details={})
    try:
        target = resolve(request.path, cluster.store.custom_types)
    except ApiError as err:
        target, missing = None, err
    watch = False
    if target is not None:
        watch = _is_watch(request, target)
        verb = target.verb(request.method, watch)
        cluster.accounting.record(verb, target.resource, target.namespace)
    # Authorization comes before routing: a forbidden caller learns nothing of what exists.
    authz.authorize_request(request)
    if target is None:
        raise missing
    allowed = _METHODS_ON_ITEM if target.name else _METHODS_ON_COLLECTION
    if request.method not in allowed or (target.subresource == "log" and request.method != "GET"):
        raise ApiError(
            405,
            f"the server does not allow this method on the requested resource "
            f"({request.method} {target.resource})",
        )
    await inject(request, cluster, verb, target)
    store = cluster.store
    if target.rt.group == reviews.GROUP:
        return await reviews.create(request, cluster, target)
    if target.rt is events.EVENTS_V1:
        return await events.serve(request, store, target, watch)
    if target.subresource == "scale":
        return await subresources.scale(request, cluster, target)
    if target.subresource == "log":
        return await subresources.pod_log(request, cluster, target)
    if watch:
        return await serve_watch(request, store, target)
    method = request.method
    if method == "GET":
        if target.name:
            return await handlers.get(request, store, target)
        return await handlers.list_(request, store, target)
    if method == "POST":
        return await handlers.create(request, store, target)
    if method == "PUT":
        return await handlers.update(request, store, target)
    if method == "PATCH":
        return await handlers.patch(request, store, target)
    if target.name:
        return await handlers.delete(request, store, target)
    return await handlers.delete_collection(request, store, target)


def build_app(cluster: Cluster) -> web.Application:
    """The sandbox's HTTP application: Kubernetes API, discovery, OpenAPI and admin endpoints.

    Args:
        cluster: the state to serve; the same object controllers and the mesh model use.

    Returns:
        An application other parts (``/metrics``) may add routes to before it starts.
    """
    app = web.Application(
        middlewares=[status_errors, authz.authenticate], client_max_size=32 * 1024 * 1024
    )
    app[CLUSTER_KEY] = cluster
    app.on_response_prepare.append(authz.log_answer)
    admin.add_routes(app)
    discovery.add_routes(app)
    openapi.add_routes(app)
    app.router.add_route("*", "/api/{tail:.+}", resource)
    app.router.add_route("*", "/apis/{group}/{version}/{tail:.+}", resource)
    return app
