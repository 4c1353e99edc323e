"""The ``scale`` and ``log`` subresources."""

from __future__ import annotations

import importlib
from typing import Any

from aiohttp import web

from istio_sandbox.api.body import read_object
from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.api.handlers import patch_object
from istio_sandbox.api.target import Target
from istio_sandbox.cluster import Cluster
from istio_sandbox.store import Obj


def _scale(obj: Obj) -> dict[str, Any]:
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


async def scale(request: web.Request, cluster: Cluster, target: Target) -> web.Response:
    """GET, PUT or PATCH ``<workload>/scale``: reads and writes ``spec.replicas``."""
    store = cluster.store
    current = store.get(target.rt, target.namespace, target.name)
    if request.method == "GET":
        return json_response(_scale(current))
    if request.method == "PUT":
        wanted = await read_object(request)
    elif request.method == "PATCH":
        wanted = await patch_object(request, _scale(current), target)
    else:
        raise ApiError(405, f"the server does not allow this method on {target.resource}")
    replicas = (wanted.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(
            422,
            f'Scale.autoscaling "{target.name}" is invalid: spec.replicas: Invalid value: '
            f"{replicas!r}: must be a non-negative integer",
        )
    current.setdefault("spec", {})["replicas"] = replicas
    rv = (wanted.get("metadata") or {}).get("resourceVersion")
    if rv:
        current["metadata"]["resourceVersion"] = rv
    return json_response(_scale(store.update(target.rt, current)))


def _log_function() -> Any:
    try:
        module = importlib.import_module("istio_sandbox.controllers.logs")
    except ImportError:
        return None
    return getattr(module, "pod_log", None)


async def pod_log(request: web.Request, cluster: Cluster, target: Target) -> web.Response:
    """``pods/<name>/log`` (``follow`` is served as a one-shot read)."""
    tail: int | None = None
    raw_tail = request.query.get("tailLines")
    if raw_tail:
        try:
            tail = int(raw_tail)
        except ValueError:
            raise ApiError.bad_request(f"tailLines: Invalid value: {raw_tail!r}") from None
    container = request.query.get("container") or None
    fn = _log_function()
    if fn is not None:
        # The controllers know container states; their errors are StoreErrors (400/404).
        text = fn(cluster, target.namespace, target.name, container, tail)
        return web.Response(text=text, content_type="text/plain")
    pod = cluster.store.get(target.rt, target.namespace, target.name)
    containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    if container is None and len(containers) != 1:
        raise ApiError.bad_request(
            f"a container name must be specified for pod {target.name}, choose one of: "
            f"[{' '.join(containers)}]"
        )
    if container is not None and container not in containers:
        raise ApiError.bad_request(f"container {container} is not valid for pod {target.name}")
    return web.Response(text="", content_type="text/plain")
