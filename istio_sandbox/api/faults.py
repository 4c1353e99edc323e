"""API fault injection: answers chosen by ``cluster.faults.api`` before a handler runs."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from istio_sandbox.api.errors import ApiError
from istio_sandbox.api.target import Target
from istio_sandbox.cluster import Cluster
from istio_sandbox.faults import ApiFault

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class DroppedConnection(Exception):
    """The connection was closed on purpose; nothing is to be written."""


def _matches(fault: ApiFault, verb: str, target: Target) -> bool:
    if fault.verbs and verb not in fault.verbs:
        return False
    if fault.resources and not {target.rt.plural, target.resource} & set(fault.resources):
        return False
    if fault.namespaces and target.namespace not in fault.namespaces:
        return False
    if fault.kind == "conflict" and verb not in WRITE_VERBS:
        return False
    return not (fault.count is not None and fault.count <= 0)


def pick_fault(cluster: Cluster, verb: str, target: Target) -> ApiFault | None:
    """The first matching fault that fires this time; consumes one of its ``count``."""
    for fault in cluster.faults.api:
        if not _matches(fault, verb, target):
            continue
        if fault.probability < 1.0 and random.random() >= fault.probability:
            continue
        if fault.count is not None:
            fault.count -= 1
        return fault
    return None


async def inject(request: web.Request, cluster: Cluster, verb: str, target: Target) -> None:
    """Act out the fault chosen for this request, if any.

    Raises:
        ApiError: for ``status`` and ``conflict`` faults.
        DroppedConnection: for ``drop`` faults, after closing the transport.
    """
    fault = pick_fault(cluster, verb, target)
    if fault is None:
        return
    if fault.kind == "latency":
        await asyncio.sleep(fault.latency_ms / 1000)
    elif fault.kind == "drop":
        if request.transport is not None:
            request.transport.close()
        raise DroppedConnection()
    elif fault.kind == "conflict":
        name = target.name or "<collection>"
        raise ApiError(
            409,
            f'Operation cannot be fulfilled on {target.rt.plural} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            reason="Conflict",
            details={"name": name, "kind": target.rt.plural},
        )
    else:
        headers = {"Retry-After": str(fault.retry_after_s)} if fault.code == 429 else {}
        message = {
            429: "Too many requests, please try again later.",
            503: "the server is currently unable to handle the request",
        }.get(fault.code, "Internal error occurred: injected fault")
        details = {"retryAfterSeconds": fault.retry_after_s} if fault.code == 429 else None
        raise ApiError(fault.code, message, details=details, headers=headers)
