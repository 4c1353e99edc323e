"""One upgrade per cluster, enforced by the cluster itself.

The starters refuse a second upgrade by asking Temporal's visibility store, which a start from
the Web UI or the raw API bypasses and two simultaneous starts can race. The lock is a
ConfigMap in ``istio-system`` created with a plain create: the API server lets exactly one
creator win, whoever started the workflow and however.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.exceptions import ApplicationError

from istio_upgrade.activities.discovery import LABEL_MANAGED_BY, MANAGER
from istio_upgrade.activities.kube_client import AlreadyExists, Conflict, Kube, NotFound, Obj
from istio_upgrade.istio.naming import ISTIO_NAMESPACE
from istio_upgrade.models.activities import LOCK_CONFIGMAP, LockResult


def _holder(obj: Obj | None) -> str | None:
    if obj is None:
        return None
    return str((obj.get("data") or {}).get("holder") or "") or None


def lock_object(kube: Kube) -> Obj | None:
    """The lock ConfigMap, if the cluster is locked."""
    return kube.get_or_none("v1", "ConfigMap", LOCK_CONFIGMAP, ISTIO_NAMESPACE)


def holder(kube: Kube) -> str | None:
    """The upgrade holding the cluster's lock (``<workflow id>@<first run id>``), if any."""
    return _holder(lock_object(kube))


def release_exactly(kube: Kube, seen: Obj) -> bool:
    """Delete the lock ``seen`` — not one taken since (a resourceVersion precondition).

    Returns:
        True when deleted or already gone, False when the lock changed meanwhile.
    """
    meta = seen.get("metadata") or {}
    try:
        kube.request(
            "DELETE",
            kube.path("v1", "ConfigMap", ISTIO_NAMESPACE, LOCK_CONFIGMAP),
            body={
                "preconditions": {
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                }
            },
            content_type="application/json",
        )
    except NotFound:
        return True
    except Conflict:
        return False
    return True


def acquire(kube: Kube, upgrade_id: str) -> LockResult:
    """Take the lock for ``upgrade_id``; re-entrant for the same holder (retries, runs continued
    as new), refused for any other, a re-run of the same workflow id included."""
    lock = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": LOCK_CONFIGMAP,
            "namespace": ISTIO_NAMESPACE,
            "labels": {LABEL_MANAGED_BY: MANAGER},
        },
        "data": {"holder": upgrade_id, "since": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    for _ in range(3):
        try:
            kube.create(lock)
            return LockResult(acquired=True, holder=upgrade_id)
        except AlreadyExists:
            current = holder(kube)
            if current is not None:
                return LockResult(acquired=current == upgrade_id, holder=current)
            # Released between our create and our read: try again.
        except NotFound:
            raise ApplicationError(
                f"cluster {kube.cluster} has no namespace {ISTIO_NAMESPACE}; "
                "is Istio installed there?",
                type="NamespaceNotFound",
                non_retryable=True,
            ) from None
    return LockResult(acquired=False, holder=holder(kube))


def release(kube: Kube, upgrade_id: str) -> bool:
    """Drop the lock if ``upgrade_id`` holds it; never another upgrade's. True when dropped."""
    current = lock_object(kube)
    if current is None or _holder(current) != upgrade_id:
        return False
    # Only the lock read above: another upgrade may take it between the read and the delete.
    return release_exactly(kube, current)
