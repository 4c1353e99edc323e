"""A thin REST layer over the official ``kubernetes`` client, shared by every Kubernetes activity.

The typed ``CoreV1Api``/``AppsV1Api`` classes deserialize every list into model objects, which
is slow for thousands of pods and cannot server-side apply arbitrary kinds; this layer uses the
same ``ApiClient`` (kubeconfig, auth, TLS, connection pool) but speaks JSON dicts. It turns HTTP
failures into Temporal's error taxonomy: permanent problems become non-retryable
``ApplicationError``s that say what to do, 409/429 are retried briefly here, and everything else
propagates so Temporal's retry policy owns it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import structlog
import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio import activity
from temporalio.exceptions import ApplicationError
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
)

from istio_upgrade.activities import audit
from istio_upgrade.models.spec import ClusterRef

Obj = dict[str, Any]
log = structlog.get_logger(__name__)

FIELD_MANAGER = "istio-upgrade"
IN_CLUSTER_CONTEXT = "in-cluster"
"""The one context name (besides none) a spec may use when the worker runs on in-cluster config;
it is the name the kubeconfig formerly shipped in ``deploy/`` gave the worker's own cluster."""
PAGE_SIZE = 500
"""Items per list request (kubectl's --chunk-size default): a page of 500 pods is ~3 MB of
JSON, so a list of any size holds one page at a time."""
_GC_PAUSE_BYTES = 256 * 1024
"""Answers at least this large are decoded with the cyclic GC paused (see :func:`_decode`)."""
EVENT_TIMEOUT_S = 5.0
"""An audit Event gets one attempt this long."""

# apiVersion/kind → (plural, namespaced) for the kinds the product touches; anything else is
# resolved through API discovery once per client.
_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): (
        "mutatingwebhookconfigurations",
        False,
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): (
        "validatingwebhookconfigurations",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
}


class NotFound(Exception):
    """The object (or its namespace) does not exist (HTTP 404)."""


class Conflict(Exception):
    """A write lost an optimistic-concurrency race (HTTP 409)."""


class AlreadyExists(Exception):
    """A create found an object of that name (HTTP 409, reason AlreadyExists); not retried."""


class ServerUnavailable(Exception):
    """The API server failed this one request (HTTP 500, 502, 503, 504)."""


class Expired(Exception):
    """A list's continue token is too old (HTTP 410, reason Expired: etcd compacted the list's
    revision); ``continue_token`` goes on from the current state when the server gave one."""

    def __init__(self, message: str, continue_token: str | None) -> None:
        super().__init__(message)
        self.continue_token = continue_token


class TooManyRequests(Exception):
    """The API server asked to slow down (HTTP 429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _status(error: ApiException) -> tuple[str, str]:
    """``message`` and ``reason`` of a ``kind: Status`` answer (reason: ``AlreadyExists`` …)."""
    try:
        body = json.loads(error.body or "{}")
        return str(body.get("message") or error.reason), str(body.get("reason") or "")
    except (ValueError, AttributeError):
        return str(error.reason), ""


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, across threads (the last one out restores it)."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _decode(data: bytes) -> Any:
    """JSON of an answer. Decoding a page of 500 pods allocates ~150,000 dicts and lists, and
    every few hundred allocations start a GC pass over the whole heap: with the GC on, the
    decode takes 3-5 times longer. Parsed JSON holds no reference cycles, so nothing it
    allocates needs the cyclic collector."""
    if len(data) < _GC_PAUSE_BYTES:
        return json.loads(data)
    with _gc_paused():
        return json.loads(data)


def _wait(state: RetryCallState) -> float:
    error: BaseException | None = state.outcome.exception() if state.outcome else None
    if isinstance(error, TooManyRequests):
        after: float = error.retry_after
        return min(max(after, 0.1), 10.0)
    return min(0.1 * 2.0**state.attempt_number, 2.0)


# Every request this client sends is "make it so" (merge patches, server-side apply, reads;
# the lock's create reads an AlreadyExists back), so repeating one after a transient answer or
# a dropped connection is safe. Retrying the single request here keeps
# a large batch step from failing as a whole on one 503 among hundreds of calls; Temporal's
# activity retries stay in charge of anything that lasts longer than a few seconds.
_retry_briefly = retry(
    retry=retry_if_exception(
        lambda e: isinstance(e, TooManyRequests | Conflict | ServerUnavailable)
    ),
    wait=_wait,
    stop=stop_after_attempt(6),
    reraise=True,
)


class Kube:
    """JSON requests to one cluster through one ``ApiClient``."""

    def __init__(self, api: ApiClient, cluster: str) -> None:
        self.api = api
        self.cluster = cluster
        self.requests = 0
        self._plurals: dict[tuple[str, str], tuple[str, bool]] = dict(_KNOWN)
        self._lock = threading.Lock()

    def _raw(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float = 30,
    ) -> bytes:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        method_, url, header_params, body_, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        with self._lock:
            self.requests += 1
        try:
            response = self.api.call_api(
                method_, url, header_params, body_, _request_timeout=timeout
            )
        except urllib3.exceptions.HTTPError as error:
            # A dropped connection, a refused one (an API server restarting), a read timeout:
            # as transient as a 503, and every request here is safe to repeat.
            raise ServerUnavailable(
                f"{method} {path} on cluster {self.cluster}: connection failed ({error})"
            ) from error
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            text = data.decode("utf-8", "replace") if data else None
            try:
                ApiException.from_response(http_resp=response, body=text, data=None)
            except ApiException as error:
                self._translate(error, method, path)
            raise AssertionError("unreachable")
        return bytes(data or b"")

    def _translate(self, error: ApiException, method: str, path: str) -> None:
        status = error.status or 0
        what = f"{method} {path} on cluster {self.cluster}"
        text, reason = _status(error)
        if status in (401, 403):
            raise ApplicationError(
                f"{what} was refused ({status}: {text}); grant the worker's kubeconfig user "
                "or service account the RBAC of deploy/ (deploy/rbac.yaml, and "
                "deploy/components/installer-manifests/ to install revisions); "
                "`istio-upgrade plan` names every missing permission",
                type="Forbidden",
                non_retryable=True,
            )
        if status == 404:
            raise NotFound(f"{what}: not found ({text})")
        if status == 410 and reason == "Expired":
            try:
                token = (json.loads(error.body or "{}").get("metadata") or {}).get("continue")
            except (ValueError, AttributeError):
                token = None
            raise Expired(f"{what}: expired ({text})", str(token) if token else None)
        if status == 409:
            if reason == "AlreadyExists":
                raise AlreadyExists(f"{what}: already exists ({text})")
            raise Conflict(f"{what}: conflict ({text})")
        if status == 429:
            headers = error.headers or {}
            try:
                after = float(headers.get("Retry-After", "1"))
            except ValueError:
                after = 1.0
            raise TooManyRequests(f"{what}: too many requests", after)
        if status in (500, 502, 503, 504):
            raise ServerUnavailable(f"{what}: server error {status} ({text})")
        if status in (400, 415, 422):
            raise ApplicationError(
                f"{what} was rejected as invalid ({status}: {text}); fix the object or bundle",
                type="InvalidObject",
                non_retryable=True,
            )
        raise error

    @_retry_briefly
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Obj:
        """One JSON request, with 409/429/5xx retried briefly."""
        data = self._raw(method, path, query=query, body=body, content_type=content_type)
        return _decode(data) if data else {}

    @_retry_briefly
    def text(self, path: str, query: list[tuple[str, Any]] | None = None) -> str:
        """A GET answered with plain text (pod logs)."""
        return self._raw("GET", path, query=query, accept="*/*").decode("utf-8", "replace")

    # Paths -----------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from the built-in table or API discovery."""
        key = (api_version, kind)
        if key not in self._plurals:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.request("GET", base)
            except NotFound:
                raise ApplicationError(
                    f"cluster {self.cluster} does not serve {api_version}; "
                    "install the CRDs the bundle needs first",
                    type="UnknownKind",
                    non_retryable=True,
                ) from None
            for res in listing.get("resources", []):
                if "/" not in res["name"]:
                    self._plurals[(api_version, res["kind"])] = (res["name"], res["namespaced"])
            if key not in self._plurals:
                raise ApplicationError(
                    f"cluster {self.cluster} has no kind {kind} in {api_version}; fix the bundle",
                    type="UnknownKind",
                    non_retryable=True,
                )
        return self._plurals[key]

    def path(self, api_version: str, kind: str, namespace: str | None, name: str = "") -> str:
        plural, namespaced = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespaced and (namespace or name):
            if not namespace:
                raise ApplicationError(
                    f"{kind} {name or ''} has no metadata.namespace; set it in the bundle",
                    type="InvalidObject",
                    non_retryable=True,
                )
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{plural}"
        return f"{base}/{quote(name)}" if name else base

    # Verbs -----------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        return self.request("GET", self.path(api_version, kind, namespace, name))

    def get_or_none(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        try:
            return self.get(api_version, kind, name, namespace)
        except NotFound:
            return None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_page: Callable[[], None] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Obj]:
        """Every item, fetched ``page_size`` (default :data:`PAGE_SIZE`) at a time with
        ``limit``/``continue``, so memory holds one page whatever the list's size; ``on_page``
        is called before each page is requested (an activity's heartbeat).

        Pages after the first are served at the first one's resourceVersion. When that is
        too old (410 Expired: etcd compacted it while we paged), the listing goes on with the
        token the answer carries, from the current state: objects that exist throughout still
        come exactly once, as after client-go's pager falls back.
        """
        path = self.path(api_version, kind, namespace)
        limit = page_size or PAGE_SIZE
        token: str | None = None
        while True:
            if on_page is not None:
                on_page()
            query: list[tuple[str, Any]] = [("limit", limit)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if token:
                query.append(("continue", token))
            try:
                page = self.request("GET", path, query=query)
            except Expired as expired:
                if not token or not expired.continue_token:
                    raise
                log.warning("list continues inconsistently", path=path, reason=str(expired))
                token = expired.continue_token
                continue
            items = page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            # Drop the page's envelope before the caller works through its items.
            del page
            yield from items
            if not token:
                return

    def apply(self, obj: Obj, *, force: bool = True) -> Obj:
        """Server-side apply with the product's field manager."""
        meta = obj.get("metadata") or {}
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        with _one_write():
            written = self.request(
                "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
            )
            self._after_write(written, obj)
        return written

    def _after_write(self, written: Obj, fallback: Obj) -> None:
        """Heartbeat and record the write as an Event on the object (``audit.py``)."""
        context = audit.current()
        if context is None:
            return
        if context.tick is not None:
            context.tick()
        obj = written if (written.get("metadata") or {}).get("name") else fallback
        event = audit.event_for(obj, context)
        if event is None:
            return
        try:
            # One short attempt, not the retried request: an Event must never hold a step
            # past its heartbeat timeout.
            self._raw(
                "POST",
                self.path("v1", "Event", event["metadata"]["namespace"]),
                body=event,
                content_type="application/json",
                timeout=EVENT_TIMEOUT_S,
            )
        except Exception as error:  # the history is the record; an Event is a courtesy
            log.warning("event not recorded", object=event["involvedObject"], error=str(error))

    def create(self, obj: Obj) -> Obj:
        """Create an object; raises :class:`AlreadyExists` when the name is taken."""
        meta = obj.get("metadata") or {}
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return self.request(
            "POST",
            path,
            query=[("fieldManager", FIELD_MANAGER)],
            body=obj,
            content_type="application/json",
        )

    def merge_patch(
        self, api_version: str, kind: str, name: str, patch: Obj, namespace: str | None = None
    ) -> Obj:
        with _one_write():
            written = self.request(
                "PATCH",
                self.path(api_version, kind, namespace, name),
                query=[("fieldManager", FIELD_MANAGER)],
                body=patch,
                content_type="application/merge-patch+json",
            )
            self._after_write(written, _ref(api_version, kind, name, namespace))
        return written

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete an object; False when it was already gone."""
        with _one_write():
            try:
                answer = self.request(
                    "DELETE",
                    self.path(api_version, kind, namespace, name),
                    body={"propagationPolicy": "Background"},
                    content_type="application/json",
                )
            except NotFound:
                return False
            # The answer is the object being deleted, or a Status.
            written = answer if answer.get("kind") == kind else {}
            self._after_write(written, _ref(api_version, kind, name, namespace))
        return True

    def pod_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str:
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log"
        return self.text(path, [("container", container), ("tailLines", tail_lines)])


def _ref(api_version: str, kind: str, name: str, namespace: str | None) -> Obj:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


@contextlib.contextmanager
def _one_write() -> Iterator[None]:
    """A write and its Event are one step: a cancellation of the activity (raised into its
    thread by the SDK) waits until both are done, so the activity stops between writes."""
    if activity.in_activity():
        with activity.shield_thread_cancel_exception():
            yield
    else:
        yield


class KubeClients:
    """One ``Kube`` per kubeconfig context, created on first use and then shared by threads.

    Credentials come from, in order: the kubeconfig passed in or named by ``KUBECONFIG``; else
    ``~/.kube/config`` if it exists; else, inside a pod (``KUBERNETES_SERVICE_HOST`` set), the
    pod's service account. A kubeconfig that is named but missing is an error rather than a
    reason to fall back: silently upgrading a different cluster than the one configured would
    be far worse than failing.
    """

    def __init__(self, kubeconfig: str | None = None) -> None:
        self.kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        self._clients: dict[str | None, Kube] = {}
        self._lock = threading.Lock()

    def in_cluster(self) -> bool:
        """Whether clients use the pod's service account instead of a kubeconfig."""
        if self.kubeconfig:
            return False
        if os.path.exists(os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)):
            return False
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

    def _in_cluster_client(self, cluster: ClusterRef) -> ApiClient:
        if cluster.context not in (None, IN_CLUSTER_CONTEXT):
            raise ApplicationError(
                f"cluster {cluster.name} names context {cluster.context}, but the worker has no "
                "kubeconfig and reaches only its own cluster through its service account; "
                f"leave cluster.context unset (or {IN_CLUSTER_CONTEXT!r}), or mount a kubeconfig "
                "with that context and set KUBECONFIG",
                type="KubeconfigError",
                non_retryable=True,
            )
        # A fresh Configuration rather than the library-wide default, so that the refresh hook
        # the loader installs (it re-reads the rotated, short-lived projected token) belongs to
        # this client alone.
        configuration = Configuration()
        try:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException as error:
            raise ApplicationError(
                f"cannot use the pod's service account for cluster {cluster.name}: {error}; "
                "mount the service account token (automountServiceAccountToken) or set KUBECONFIG",
                type="KubeconfigError",
                non_retryable=True,
            ) from None
        return ApiClient(configuration)

    def _kubeconfig_client(self, cluster: ClusterRef) -> ApiClient:
        try:
            api: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=self.kubeconfig, context=cluster.context
            )
        except (ConfigException, FileNotFoundError) as error:
            raise ApplicationError(
                f"cannot load kubeconfig {self.kubeconfig or '~/.kube/config'} context "
                f"{cluster.context or '(current)'} for cluster {cluster.name}: {error}; "
                "fix cluster.context or the worker's KUBECONFIG",
                type="KubeconfigError",
                non_retryable=True,
            ) from None
        return api

    def for_cluster(self, cluster: ClusterRef) -> Kube:
        """The client of ``cluster.context``.

        Raises:
            ApplicationError: No usable credentials for the cluster (non-retryable).
        """
        with self._lock:
            kube = self._clients.get(cluster.context)
            if kube is None:
                if self.in_cluster():
                    api = self._in_cluster_client(cluster)
                else:
                    api = self._kubeconfig_client(cluster)
                kube = Kube(api, cluster.name)
                self._clients[cluster.context] = kube
            return kube

    def close(self) -> None:
        with self._lock:
            for kube in self._clients.values():
                kube.api.close()  # type: ignore[no-untyped-call]
            self._clients.clear()
