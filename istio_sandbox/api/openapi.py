"""A minimal OpenAPI v3 description: enough for kubectl to see server-side field validation.

kubectl (apply, create, replace) asks ``/openapi/v3`` whether the PATCH operation of a kind
accepts ``fieldValidation``; when it does, kubectl skips client-side schema validation and
lets the server validate. Schemas are left open (``x-kubernetes-preserve-unknown-fields``),
so ``kubectl explain`` shows no field documentation.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from aiohttp import web

from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.resources import RESOURCE_TYPES, ResourceType

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(rt: ResourceType) -> str:
    base = "/" + _gv_path(rt.group, rt.version)
    if rt.namespaced:
        return f"{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
    return f"{base}/{rt.plural}/{{name}}"


def _schema_name(rt: ResourceType) -> str:
    return f"{rt.group or 'core'}.{rt.version}.{rt.kind}"


def _operation(rt: ResourceType, action: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{_schema_name(rt)}"}
    return {
        "operationId": f"{action}{rt.kind}",
        "parameters": [
            {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for p in _QUERY_PARAMS
        ],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
    }


@cache
def gv_document(group: str, version: str) -> str | None:
    """The serialized OpenAPI v3 document of one group/version; None when not served."""
    types = [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in types:
        paths[_item_path(rt)] = {
            "get": _operation(rt, "get"),
            "put": _operation(rt, "put"),
            "patch": _operation(rt, "patch"),
            "delete": _operation(rt, "delete"),
        }
        schemas[_schema_name(rt)] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [
                {"group": rt.group, "version": rt.version, "kind": rt.kind}
            ],
        }
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(doc, separators=(",", ":"))


def _hash(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:128].upper()


async def index(_: web.Request) -> web.Response:
    paths: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version) in seen:
            continue
        seen.add((rt.group, rt.version))
        doc = gv_document(rt.group, rt.version)
        assert doc is not None
        gv = _gv_path(rt.group, rt.version)
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(doc)}"}
    return json_response({"paths": paths})


async def gv(request: web.Request) -> web.Response:
    parts = request.match_info["gv"].strip("/").split("/")
    doc = None
    if len(parts) == 2 and parts[0] == "api":
        doc = gv_document("", parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        doc = gv_document(parts[1], parts[2])
    if doc is None:
        raise ApiError(404, "the server could not find the requested resource", details={})
    return web.Response(text=doc, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi/v3", index)
    app.router.add_get("/openapi/v3/{gv:.+}", gv)
