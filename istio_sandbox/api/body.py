"""Request bodies: JSON and YAML decoding with BadRequest errors a client can act on."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from istio_sandbox.api import protobuf
from istio_sandbox.api.errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


JSON_TYPES = ("application/json", "application/yaml", "text/plain", "application/octet-stream")


def _check_media_type(request: web.Request, accepted: tuple[str, ...]) -> None:
    # CBOR bodies (and protobuf of kinds not decoded) get 415: client-go then sends JSON.
    if request.body_exists and request.content_type not in accepted:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(accepted)}",
        )


async def read_json(request: web.Request) -> Any:
    """The decoded JSON body; 400 when it is not JSON, 415 for CBOR and most protobuf."""
    if request.body_exists and request.content_type == protobuf.PROTOBUF:
        return protobuf.decode(await request.read())
    _check_media_type(request, (*JSON_TYPES, *PATCH_TYPES))
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as err:
        raise ApiError.bad_request(f"the request body is not valid JSON: {err}") from None


async def read_yaml(request: web.Request) -> Any:
    """The decoded YAML (or JSON) body of an apply patch; 400 when unparsable."""
    raw = await request.read()
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ApiError.bad_request(f"error decoding YAML: {err}") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    """A body that must be a JSON object (create, update)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError.bad_request("the request body must be a JSON object (a Kubernetes object)")
    return body
