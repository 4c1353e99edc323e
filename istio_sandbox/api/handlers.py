"""Resource handlers: get, list, create, update, patch, delete, deletecollection."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from aiohttp import web

from istio_sandbox.api import apply as ssa
from istio_sandbox.api.authz import check_rbac_write
from istio_sandbox.api.body import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_TYPES,
    STRATEGIC_PATCH,
    read_json,
    read_object,
    read_yaml,
)
from istio_sandbox.api.defaults import prepare_for_create, prepare_labels
from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.api.lists import Filter, list_body, list_bytes, list_page, matching
from istio_sandbox.api.patch import PatchError, json_patch, merge_patch
from istio_sandbox.api.patch import strategic_merge_patch as smp
from istio_sandbox.api.schema import schema_errors
from istio_sandbox.api.specs import spec_errors
from istio_sandbox.api.tables import table, wants_table
from istio_sandbox.api.target import Target, namespaces_type
from istio_sandbox.api.validation import event_errors, object_errors
from istio_sandbox.resources import BY_KEY, RESOURCE_TYPES, ResourceType, all_types
from istio_sandbox.store import NotFound, Obj, Store, now_iso

PODS = BY_KEY["/pods"]
EVENTS = BY_KEY["/events"]

# Kinds the API server answers a delete with the object for: registries with
# ``ReturnDeletedObject: true`` (pkg/registry/core/{pod,service}/storage/storage.go) and those
# whose object lingers while finalizing (namespaces, CRDs); every other kind gets a Status
# Success (k8s.io/apiserver/pkg/registry/generic/registry/store.go ``Delete``).
_RETURNS_OBJECT_ON_DELETE = frozenset(
    {"pods", "services", "namespaces", "customresourcedefinitions"}
)
# Kinds whose deletion cascades to the objects they own (background propagation).
_OWNERS = frozenset(
    {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs", "rollouts"}
    | {"gateways"}  # Gateway API Gateways own the Deployment/Service istiod renders for them
)


def _dry_run(request: web.Request) -> bool:
    return bool(request.query.getall("dryRun", []))


def _respond(request: web.Request, target: Target, obj: Obj, status: int = 200) -> web.Response:
    if wants_table(request.headers.get("Accept", "")):
        meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
        body = table(
            target.rt, [obj], list_meta=meta, include_object=request.query.get("includeObject", "")
        )
        return json_response(body, status=status)
    return json_response(obj, status=status)


def _check_identity(target: Target, obj: Obj) -> None:
    """The body's apiVersion/kind/namespace must agree with the URL, as the API server demands."""
    rt = target.rt
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rt.api_version:
        raise ApiError.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise ApiError.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ApiError.bad_request("metadata must be an object")
    if rt.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and target.namespace and body_ns != target.namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if target.namespace:
            meta["namespace"] = target.namespace
    if target.name and meta.get("name") and meta["name"] != target.name:
        raise ApiError.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL "
            f"({target.name})"
        )
    if target.name:
        meta["name"] = target.name


def _validate(rt: ResourceType, obj: Obj, request: web.Request | None = None) -> None:
    errors = object_errors(rt.plural, obj)
    errors += spec_errors(rt.key, obj)
    if rt.schema is not None:
        strict = request is not None and request.query.get("fieldValidation") == "Strict"
        errors += schema_errors(rt.schema, obj, strict=strict)
    if rt.key == EVENTS.key:
        errors += event_errors(obj, strict=False)
    if errors:
        raise ApiError.invalid(rt, (obj.get("metadata") or {}).get("name", ""), errors)


def _require_namespace(store: Store, target: Target) -> None:
    if target.rt.namespaced and target.namespace:
        store.get(namespaces_type(), "", target.namespace)


# -- reads -----------------------------------------------------------------------------------


async def get(request: web.Request, store: Store, target: Target) -> web.Response:
    return _respond(request, target, store.get(target.rt, target.namespace, target.name))


async def list_(request: web.Request, store: Store, target: Target) -> web.Response:
    flt = Filter.from_query(request.query, target.rt)
    items, meta = list_page(store, target, flt, request.query)
    # Serialize before yielding to the loop: ``items`` alias live store objects.
    if wants_table(request.headers.get("Accept", "")):
        include = request.query.get("includeObject", "")
        return json_response(table(target.rt, items, list_meta=meta, include_object=include))
    return web.Response(
        body=list_bytes(store, target.rt, items, meta), content_type="application/json"
    )


# -- writes ----------------------------------------------------------------------------------


async def create(request: web.Request, store: Store, target: Target) -> web.Response:
    obj = await read_object(request)
    _check_identity(target, obj)
    _require_namespace(store, target)
    check_rbac_write(request, target, obj, None)
    prepare_for_create(target.rt, obj)
    _validate(target.rt, obj, request)
    manager = request.query.get("fieldManager")
    if manager:
        ssa.record_update(obj, manager, target.rt.api_version)
    if _dry_run(request):
        return _respond(request, target, obj, status=201)
    return _respond(request, target, store.create(target.rt, obj), status=201)


async def update(request: web.Request, store: Store, target: Target) -> web.Response:
    obj = await read_object(request)
    _check_identity(target, obj)
    prepare_labels(target.rt, obj)
    _validate(target.rt, obj, request)
    current = store.get(target.rt, target.namespace, target.name)
    if not target.subresource:
        check_rbac_write(request, target, obj, current)
    manager = request.query.get("fieldManager")
    if manager:
        ssa.record_update(obj, manager, target.rt.api_version, target.subresource)
    elif "managedFields" in current["metadata"] and "managedFields" not in obj["metadata"]:
        obj["metadata"]["managedFields"] = current["metadata"]["managedFields"]
    if _dry_run(request):
        return _respond(request, target, obj)
    return _respond(request, target, store.update(target.rt, obj, subresource=target.subresource))


async def patch_object(request: web.Request, current: Obj | None, target: Target) -> Obj:
    """The object after applying the request's patch to ``current`` (None only for apply)."""
    ctype = request.content_type
    if ctype not in PATCH_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}",
        )
    if ctype == APPLY_PATCH:
        manager = request.query.get("fieldManager")
        if not manager:
            raise ApiError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                "required for apply patch",
            )
        applied = await read_yaml(request)
        if not isinstance(applied, dict):
            raise ApiError.bad_request("an apply patch must be a YAML or JSON object")
        _check_identity(target, applied)
        return ssa.apply(current, applied, manager, target.rt.api_version)
    assert current is not None
    body = await read_json(request)
    try:
        if ctype == JSON_PATCH:
            result = json_patch(current, body)
        elif ctype == MERGE_PATCH:
            result = merge_patch(current, body)
        else:
            assert ctype == STRATEGIC_PATCH
            result = smp(current, body)
    except PatchError as err:
        raise ApiError(err.code, str(err)) from None
    if not isinstance(result, dict):
        raise ApiError(422, "the patch turned the object into something that is not an object")
    manager = request.query.get("fieldManager")
    if manager:
        ssa.record_update(result, manager, target.rt.api_version, target.subresource)
    return result


async def patch(request: web.Request, store: Store, target: Target) -> web.Response:
    rt = target.rt
    current = store.try_get(rt, target.namespace, target.name)
    if current is None and request.content_type != APPLY_PATCH:
        store.get(rt, target.namespace, target.name)  # raises the NotFound Status
    if current is None:
        if target.subresource:
            store.get(rt, target.namespace, target.name)
        _require_namespace(store, target)
        obj = await patch_object(request, None, target)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        managed = obj["metadata"].get("managedFields")
        check_rbac_write(request, target, obj, None)
        prepare_for_create(rt, obj)
        obj["metadata"]["managedFields"] = managed
        _validate(rt, obj, request)
        if _dry_run(request):
            return _respond(request, target, obj, status=201)
        return _respond(request, target, store.create(rt, obj), status=201)
    result = await patch_object(request, current, target)
    meta = result.setdefault("metadata", {})
    if meta.get("name") != target.name:
        raise ApiError(
            422, f'{rt.kind} "{target.name}" is invalid: metadata.name: field is immutable'
        )
    if rt.namespaced:
        meta["namespace"] = target.namespace
    meta.setdefault("resourceVersion", current["metadata"]["resourceVersion"])
    prepare_labels(rt, result)
    if not target.subresource:
        check_rbac_write(request, target, result, current)
    _validate(rt, result, request)
    if _dry_run(request):
        return _respond(request, target, result)
    updated = store.update(rt, result, subresource="status" if target.subresource else "")
    return _respond(request, target, updated)


# -- deletes ---------------------------------------------------------------------------------


async def _delete_options(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    opts: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if "propagationPolicy" in request.query:
        opts["propagationPolicy"] = request.query["propagationPolicy"]
    return opts


def _check_preconditions(rt: ResourceType, current: Obj, opts: dict[str, Any]) -> None:
    pre = opts.get("preconditions") or {}
    meta = current["metadata"]
    for field in ("uid", "resourceVersion"):
        want = pre.get(field)
        if want and want != meta.get(field):
            label = "UID" if field == "uid" else "ResourceVersion"
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {rt.plural} "{meta["name"]}": Precondition '
                f"failed: {label} in precondition: {want}, {label} in object meta: "
                f"{meta.get(field)}",
                reason="Conflict",
                details={"name": meta["name"], "kind": rt.plural},
            )


def delete_pod(store: Store, namespace: str, name: str, grace_s: int | None) -> Obj:
    """Graceful pod deletion, as the API server does it.

    A scheduled, unfinished pod only gets ``deletionTimestamp`` (Terminating); the pod
    controller removes it after the termination delay. Unscheduled or finished pods, and
    ``gracePeriodSeconds=0``, go at once — which also keeps a sandbox without controllers
    from accumulating Terminating pods, since nothing schedules its pods.
    """
    pod = store.get(PODS, namespace, name)
    meta, spec = pod["metadata"], pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    if grace_s == 0 or not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return store.delete(PODS, namespace, name)
    if meta.get("deletionTimestamp"):
        return pod
    meta["deletionTimestamp"] = now_iso()
    meta["deletionGracePeriodSeconds"] = (
        grace_s if grace_s is not None else int(spec.get("terminationGracePeriodSeconds", 30))
    )
    return store.update(PODS, pod)


def delete_tree(
    store: Store,
    rt: ResourceType,
    namespace: str,
    name: str,
    orphan: bool,
    grace_s: int | None = None,
) -> Obj:
    """Delete an object and, unless ``orphan``, what it owns (recursively) or contains."""
    if rt.plural == "namespaces":
        for other in all_types(store.custom_types):
            if other.namespaced:
                for obj in store.list(other, name, copy_objects=False)[:]:
                    _quiet_delete(store, other, name, obj["metadata"]["name"])
        gone = store.delete(rt, "", name)
        gone.setdefault("status", {})["phase"] = "Terminating"
        return gone
    if rt.key == PODS.key:
        return delete_pod(store, namespace, name, grace_s)
    gone = store.delete(rt, namespace, name)
    if not orphan and rt.plural in _OWNERS:
        uid = gone["metadata"].get("uid")
        for other in RESOURCE_TYPES:
            if not other.namespaced:
                continue
            for obj in store.list(other, namespace, copy_objects=False):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    with contextlib.suppress(NotFound):
                        delete_tree(store, other, namespace, obj["metadata"]["name"], orphan)
    return gone


def _quiet_delete(store: Store, rt: ResourceType, namespace: str, name: str) -> None:
    with contextlib.suppress(NotFound):
        store.delete(rt, namespace, name)


def _grace(request: web.Request, opts: dict[str, Any]) -> int | None:
    raw = request.query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
    if raw is None:
        return None
    try:
        return max(int(raw), 0)
    except (TypeError, ValueError):
        raise ApiError.bad_request(
            f"gracePeriodSeconds: Invalid value: {raw!r}: must be an integer"
        ) from None


async def delete(request: web.Request, store: Store, target: Target) -> web.Response:
    opts = await _delete_options(request)
    current = store.get(target.rt, target.namespace, target.name)
    _check_preconditions(target.rt, current, opts)
    if _dry_run(request):
        return _respond(request, target, current)
    orphan = opts.get("propagationPolicy") == "Orphan" or opts.get("orphanDependents") is True
    gone = delete_tree(
        store, target.rt, target.namespace, target.name, orphan, _grace(request, opts)
    )
    if target.rt.plural in _RETURNS_OBJECT_ON_DELETE:
        return _respond(request, target, gone)
    return json_response(_success(target.rt, gone))


def _success(rt: ResourceType, gone: Obj) -> dict[str, Any]:
    meta = gone["metadata"]
    details: dict[str, Any] = {"name": meta["name"], "kind": rt.plural, "uid": meta.get("uid")}
    if rt.group:
        details["group"] = rt.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


async def delete_collection(request: web.Request, store: Store, target: Target) -> web.Response:
    opts = await _delete_options(request)
    flt = Filter.from_query(request.query, target.rt)
    victims = [copy.deepcopy(o) for o in matching(store, target, flt)]
    orphan = opts.get("propagationPolicy") == "Orphan"
    gone = []
    if not _dry_run(request):
        for obj in victims:
            meta = obj["metadata"]
            try:
                ns, name = meta.get("namespace", ""), meta["name"]
                grace = _grace(request, opts)
                gone.append(delete_tree(store, target.rt, ns, name, orphan, grace))
            except NotFound:
                continue
    else:
        gone = victims
    return json_response(
        list_body(target.rt, gone, {"resourceVersion": str(store.resource_version)})
    )
