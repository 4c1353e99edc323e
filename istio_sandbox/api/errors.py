"""``kind: Status`` error bodies, as the Kubernetes API server writes them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from istio_sandbox.api.validation import FieldError
from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Store, StoreError

_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Failure ``Status`` object; ``reason`` defaults to the one Kubernetes uses for ``code``."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASON_BY_CODE.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def resource_details(rt: ResourceType | None, name: str) -> dict[str, Any]:
    """``details`` of a NotFound/AlreadyExists/Conflict Status: name, group, resource plural."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rt is not None:
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
    return details


class ApiError(Exception):
    """An error answer; raised anywhere below a handler and rendered by the error middleware."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        list_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.list_meta = list_meta or {}
        """The Status's ``metadata`` (a 410 Expired list carries a ``continue`` token)."""
        self.code = code
        self.message = message
        self.reason = reason
        self.details = details
        self.headers = headers or {}

    @classmethod
    def from_store(cls, err: StoreError) -> ApiError:
        return cls(
            err.code,
            err.message,
            reason=err.reason,
            details=resource_details(err.rt, err.name),
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, message)

    @classmethod
    def invalid(cls, rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
        """422 with one cause per field error, worded like the API server
        (``apierrors.NewInvalid``: the kind is qualified by its group, ``Deployment.apps``)."""
        joined = ", ".join(str(e) for e in errors)
        qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        message = f'{qualified} "{name}" is invalid: '
        message += f"[{joined}]" if len(errors) > 1 else joined
        details: dict[str, Any] = {
            "name": name,
            "kind": rt.kind,
            "causes": [
                {"reason": e.reason, "message": e.message, "field": e.field} for e in errors
            ],
        }
        if rt.group:
            details["group"] = rt.group
        return cls(422, message, reason="Invalid", details=details)

    def body(self) -> dict[str, Any]:
        body = status_body(self.code, self.message, self.reason, self.details)
        if self.list_meta:
            body["metadata"] = dict(self.list_meta)
        return body

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.code, headers=self.headers)


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact JSON answer (``application/json``, what client-go and the Python client read)."""
    return web.Response(
        body=Store.to_json(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )
