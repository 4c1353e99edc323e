"""Resolve a REST path into the resource, namespace, name and subresource it addresses."""

from __future__ import annotations

from dataclasses import dataclass

from istio_sandbox.api.errors import ApiError
from istio_sandbox.resources import BY_KEY, CustomTypes, ResourceType, lookup

_NAMESPACES = BY_KEY["/namespaces"]


@dataclass(frozen=True)
class Target:
    """What one resource request addresses."""

    rt: ResourceType
    namespace: str
    """Namespace from the URL; empty for cluster-scoped resources and all-namespace lists."""
    name: str = ""
    subresource: str = ""
    legacy_watch: bool = False
    """The path used the deprecated ``/watch/`` prefix."""

    @property
    def resource(self) -> str:
        """Accounting name: ``pods`` or ``pods/log``."""
        return f"{self.rt.plural}/{self.subresource}" if self.subresource else self.rt.plural

    def verb(self, method: str, watch: bool) -> str:
        """The Kubernetes verb of a request with this HTTP method on this target."""
        if watch or self.legacy_watch:
            return "watch"
        if method == "GET":
            return "get" if self.name else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return method.lower()


def resolve(path: str, custom: CustomTypes | None = None) -> Target | None:
    """Parse ``/api/v1/...`` or ``/apis/<group>/<version>/...``; None when not a resource path.

    Raises:
        ApiError: 404 for an API group/version or resource the server does not serve.
    """
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = False
    if rest and rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
        if not rest:
            raise _not_found(path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = lookup(group, version, rest[2], custom)
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    rt = lookup(group, version, rest[0], custom)
    if rt is None:
        raise _not_found(path)
    if namespace and not rt.namespaced:
        raise _not_found(path)
    name = rest[1] if len(rest) >= 2 else ""
    sub = rest[2] if len(rest) >= 3 else ""
    if len(rest) > 3 or (sub and sub not in rt.subresources):
        raise _not_found(path)
    return Target(rt, namespace, name, sub, legacy_watch)


def _not_found(path: str) -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def namespaces_type() -> ResourceType:
    return _NAMESPACES
