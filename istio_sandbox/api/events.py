"""``events.k8s.io/v1`` Events: a second API over the core/v1 Events' storage.

As in kube-apiserver, both APIs read and write the same objects (``pkg/apis/events/v1/
conversion.go``): an Event created through one is listed, watched and deleted through the
other, with the same name, uid and resourceVersion, so ``kubectl get events`` and
``kubectl describe`` (core/v1, ``involvedObject``) show Events recorded with
``events.k8s.io/v1`` (``regarding``, ``note``). Field selectors use each API's names:
``regarding.name`` here is ``involvedObject.name`` there. Creation through this API applies
its stricter validation (``eventTime``, ``reportingController``, ``reportingInstance``,
``action``, ``reason``, ``type`` are required; the ``deprecated*`` fields must be unset).
"""

from __future__ import annotations

import json

from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping

from istio_sandbox.api import handlers
from istio_sandbox.api.authz import check_rbac_write
from istio_sandbox.api.body import APPLY_PATCH, read_object
from istio_sandbox.api.defaults import prepare_for_create, prepare_labels
from istio_sandbox.api.errors import ApiError, json_response
from istio_sandbox.api.lists import Filter, list_body, list_page, matching
from istio_sandbox.api.tables import table, wants_table
from istio_sandbox.api.target import Target
from istio_sandbox.api.validation import event_errors
from istio_sandbox.api.watch import serve_watch
from istio_sandbox.resources import BY_KEY
from istio_sandbox.store import NotFound, Obj, Store

CORE = BY_KEY["/events"]
EVENTS_V1 = BY_KEY["events.k8s.io/events"]

# events.k8s.io/v1 field → core/v1 field (the rest keep their names).
_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_FROM_CORE = {core: new for new, core in _TO_CORE.items()}
_SHARED = frozenset(
    {"metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type"}
)

# AddFieldLabelConversionsForEvent: the field selectors events.k8s.io/v1 accepts.
FIELD_LABELS = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "source": "source",
    "type": "type",
    "metadata.namespace": "metadata.namespace",
    "metadata.name": "metadata.name",
}


def to_core(event: Obj) -> Obj:
    """An ``events.k8s.io/v1`` Event in its core/v1 form."""
    out: Obj = {"apiVersion": CORE.api_version, "kind": CORE.kind}
    for key, value in event.items():
        if key in ("apiVersion", "kind"):
            continue
        out[_TO_CORE.get(key, key)] = value
    return out


def to_events_v1(event: Obj) -> Obj:
    """A core/v1 Event in its ``events.k8s.io/v1`` form."""
    out: Obj = {"apiVersion": EVENTS_V1.api_version, "kind": EVENTS_V1.kind}
    for key, value in event.items():
        if key in ("apiVersion", "kind"):
            continue
        if value is None and key not in _SHARED:
            continue
        out[_FROM_CORE.get(key, key)] = value
    return out


def _core_query(query: MultiMapping[str]) -> MultiMapping[str]:
    """The request's query with its field selector in core/v1 names."""
    raw = query.get("fieldSelector")
    if not raw:
        return query
    terms = []
    for term in raw.split(","):
        term = term.strip()
        if not term:
            continue
        op = "!=" if "!=" in term else "==" if "==" in term else "="
        if op not in term:
            terms.append(term)  # let the parser report it
            continue
        label, value = term.split(op, 1)
        mapped = FIELD_LABELS.get(label.strip())
        if mapped is None:
            raise ApiError.bad_request(f"field label not supported: {label.strip()}")
        terms.append(f"{mapped}{op}{value}")
    out = MultiDict(query)
    out["fieldSelector"] = ",".join(terms)
    return MultiDictProxy(out)


def _core_target(target: Target) -> Target:
    return Target(CORE, target.namespace, target.name, target.subresource, target.legacy_watch)


def _respond(request: web.Request, event: Obj, status: int = 200) -> web.Response:
    obj = to_events_v1(event)
    if wants_table(request.headers.get("Accept", "")):
        meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
        include = request.query.get("includeObject", "")
        return json_response(
            table(EVENTS_V1, [obj], list_meta=meta, include_object=include), status=status
        )
    return json_response(obj, status=status)


def _validate(event_v1: Obj, core: Obj) -> None:
    handlers._validate(EVENTS_V1, event_v1)
    errors = event_errors(core, strict=True)
    if errors:
        raise ApiError.invalid(
            EVENTS_V1, str((core.get("metadata") or {}).get("name") or ""), errors
        )


async def serve(
    request: web.Request, store: Store, target: Target, watch: bool
) -> web.StreamResponse:
    """Serve one ``events.k8s.io/v1`` request from the core Events' storage."""
    core = _core_target(target)
    method = request.method
    if watch:
        flt = Filter.from_query(_core_query(request.query), CORE)
        return await serve_watch(
            request, store, core, flt=flt, present=to_events_v1, view_rt=EVENTS_V1
        )
    if method == "GET" and target.name:
        return _respond(request, store.get(CORE, target.namespace, target.name))
    if method == "GET":
        query = _core_query(request.query)
        flt = Filter.from_query(query, CORE)
        items, meta = list_page(store, core, flt, query)
        converted = [to_events_v1(o) for o in items]
        if wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "")
            return json_response(
                table(EVENTS_V1, converted, list_meta=meta, include_object=include)
            )
        return json_response(list_body(EVENTS_V1, converted, meta))
    if method == "POST":
        return await _create(request, store, target)
    if method == "PUT":
        return await _update(request, store, target)
    if method == "PATCH":
        return await _patch(request, store, target)
    if target.name:
        response = await handlers.delete(request, store, core)
        body = json.loads(response.body) if isinstance(response.body, bytes) else {}
        if body.get("kind") == "Status":
            body.setdefault("details", {})["group"] = EVENTS_V1.group
            return json_response(body, status=response.status)
        return json_response(to_events_v1(body), status=response.status)
    query = _core_query(request.query)
    flt = Filter.from_query(query, CORE)
    victims = [dict(o) for o in matching(store, core, flt)]
    gone = []
    for obj in victims:
        meta = obj["metadata"]
        try:
            gone.append(
                obj
                if handlers._dry_run(request)
                else store.delete(CORE, meta["namespace"], meta["name"])
            )
        except NotFound:
            continue
    meta = {"resourceVersion": str(store.resource_version)}
    return json_response(list_body(EVENTS_V1, [to_events_v1(o) for o in gone], meta))


async def _create(request: web.Request, store: Store, target: Target) -> web.Response:
    obj = await read_object(request)
    handlers._check_identity(target, obj)
    handlers._require_namespace(store, target)
    check_rbac_write(request, target, obj, None)
    core = to_core(obj)
    prepare_for_create(CORE, core)
    _validate(obj, core)
    if handlers._dry_run(request):
        return _respond(request, core, status=201)
    return _respond(request, store.create(CORE, core), status=201)


async def _update(request: web.Request, store: Store, target: Target) -> web.Response:
    obj = await read_object(request)
    handlers._check_identity(target, obj)
    core = to_core(obj)
    prepare_labels(CORE, core)
    handlers._validate(EVENTS_V1, obj)
    errors = event_errors(core, strict=False)
    if errors:
        raise ApiError.invalid(EVENTS_V1, target.name, errors)
    store.get(CORE, target.namespace, target.name)
    if handlers._dry_run(request):
        return _respond(request, core)
    return _respond(request, store.update(CORE, core))


async def _patch(request: web.Request, store: Store, target: Target) -> web.Response:
    current = store.try_get(CORE, target.namespace, target.name)
    if current is None and request.content_type != APPLY_PATCH:
        store.get(CORE, target.namespace, target.name)  # the NotFound Status
    if current is None:
        handlers._require_namespace(store, target)
        obj = await handlers.patch_object(request, None, target)
        core = to_core(obj)
        prepare_for_create(CORE, core)
        _validate(obj, core)
        if handlers._dry_run(request):
            return _respond(request, core, status=201)
        return _respond(request, store.create(CORE, core), status=201)
    result = await handlers.patch_object(request, to_events_v1(current), target)
    meta = result.setdefault("metadata", {})
    if meta.get("name") != target.name:
        raise ApiError(422, f'Event "{target.name}" is invalid: metadata.name: field is immutable')
    meta["namespace"] = target.namespace
    meta.setdefault("resourceVersion", current["metadata"]["resourceVersion"])
    core = to_core(result)
    handlers._validate(EVENTS_V1, result)
    errors = event_errors(core, strict=False)
    if errors:
        raise ApiError.invalid(EVENTS_V1, target.name, errors)
    if handlers._dry_run(request):
        return _respond(request, core)
    return _respond(request, store.update(CORE, core))
