"""What a request asks for, parsed from its URL as the API server's ``RequestInfoFactory`` does
(k8s.io/apiserver ``pkg/endpoints/request/requestinfo.go``).

Authorization, the request log and access reviews speak in these terms: the Kubernetes verb
(``get``/``list``/``watch``/``create``/``update``/``patch``/``delete``/``deletecollection``),
API group, resource, subresource, namespace and name. Parsing needs no knowledge of which
resources exist, so a request for an unknown resource is authorized (and maybe forbidden)
before it is found missing, as on a real API server.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import MultiMapping

_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERB_BY_METHOD = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class RequestInfo:
    """The authorization attributes of one request."""

    is_resource_request: bool
    path: str
    verb: str
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def _valid_path_segment_name(name: str) -> bool:
    """``path.IsValidPathSegmentName``: not ``.``/``..``, no ``/`` or ``%``."""
    return name not in (".", "..") and "/" not in name and "%" not in name


def _exact_name(field_selector: str | None) -> str | None:
    """``fieldSelector.RequiresExactMatch("metadata.name")``."""
    if not field_selector:
        return None
    for term in field_selector.split(","):
        term = term.strip()
        if "!=" in term:
            continue
        sep = "==" if "==" in term else "="
        if sep not in term:
            continue
        key, value = term.split(sep, 1)
        if key.strip() == "metadata.name":
            return value.strip()
    return None


def parse_request_info(method: str, path: str, query: MultiMapping[str]) -> RequestInfo:
    """Parse a request the way kube-apiserver does before authorizing it.

    Resource paths are ``/api/v1/...`` and ``/apis/<group>/<version>/...``; anything else
    (``/api``, ``/apis/apps/v1``, ``/version``, ``/openapi/v2``) is a non-resource request
    whose verb is the lower-cased HTTP method.
    """
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    info = RequestInfo(is_resource_request=False, path=path, verb=method.lower())
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return info
    prefix, rest = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(rest) < 3:
            return info
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest[0] in _SPECIAL_VERBS:
        if len(rest) < 2:
            return info
        verb, rest = rest[0], rest[1:]
    else:
        verb = _VERB_BY_METHOD.get(method.upper(), "")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES else ""
    if not name and verb == "get":
        watch = query.getall("watch", [])
        verb = "watch" if watch and watch[0].lower() not in ("false", "0") else "list"
        selected = _exact_name(query.get("fieldSelector"))
        if selected is not None and _valid_path_segment_name(selected):
            name = selected
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(
        is_resource_request=True,
        path=path,
        verb=verb,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )
