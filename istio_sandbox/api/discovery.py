"""Discovery documents: ``/version``, ``/api``, ``/apis``, group/version resource lists.

Aggregated discovery (``as=APIGroupDiscoveryList``) is not implemented: answering plain
``application/json`` makes kubectl and client-go fall back to the per-group documents, as
they do against API servers older than 1.26.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

from istio_sandbox.api.admin import CLUSTER_KEY
from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.resources import CustomTypes, ResourceType, all_types

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-sandbox"}

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"]}
_SUBRESOURCE_KIND = {"scale": ("autoscaling", "v1", "Scale")}


def _group_versions(custom: CustomTypes | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for rt in all_types(custom):
        if rt.version not in out[rt.group]:
            out[rt.group].append(rt.version)
    return out


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs) or _VERBS,
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for sub in rt.subresources:
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
        }
        if sub == "log":
            entry["kind"] = "Pod"
        if sub in _SUBRESOURCE_KIND:
            group, version, kind = _SUBRESOURCE_KIND[sub]
            entry.update(group=group, version=version, kind=kind)
        out.append(entry)
    return out


def resource_list(
    group: str, version: str, custom: CustomTypes | None = None
) -> dict[str, Any] | None:
    """The ``APIResourceList`` of one group/version; None when not served."""
    types = [rt for rt in all_types(custom) if rt.group == group and rt.version == version]
    if not types:
        return None
    resources = [entry for rt in types for entry in _resource_entries(rt)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def group_list(custom: CustomTypes | None = None) -> dict[str, Any]:
    """The ``APIGroupList`` served at ``/apis``."""
    groups = []
    for group, versions in _group_versions(custom).items():
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


async def version(_: web.Request) -> web.Response:
    return json_response(
        {
            **KUBERNETES_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2024-12-11T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )


async def core_versions(request: web.Request) -> web.Response:
    host = request.host or "127.0.0.1"
    return json_response(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }
    )


async def core_resources(_: web.Request) -> web.Response:
    doc = resource_list("", "v1")
    assert doc is not None
    return json_response(doc)


def _custom(request: web.Request) -> CustomTypes:
    return request.app[CLUSTER_KEY].store.custom_types


async def groups(request: web.Request) -> web.Response:
    return json_response(group_list(_custom(request)))


async def group(request: web.Request) -> web.Response:
    name = request.match_info["group"]
    for item in group_list(_custom(request))["groups"]:
        if item["name"] == name:
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **item})
    raise ApiError(404, "the server could not find the requested resource", details={})


async def group_resources(request: web.Request) -> web.Response:
    doc = resource_list(
        request.match_info["group"], request.match_info["version"], _custom(request)
    )
    if doc is None:
        raise ApiError(404, "the server could not find the requested resource", details={})
    return json_response(doc)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/version", version)
    app.router.add_get("/api", core_versions)
    app.router.add_get("/api/v1", core_resources)
    app.router.add_get("/apis", groups)
    app.router.add_get("/apis/", groups)
    app.router.add_get("/apis/{group}", group)
    app.router.add_get("/apis/{group}/{version}", group_resources)
