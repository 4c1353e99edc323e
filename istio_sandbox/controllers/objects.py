"""Small helpers on Kubernetes JSON objects shared by the controllers (pure)."""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import UTC, datetime
from typing import Any

from istio_sandbox.resources import BY_KEY, ResourceType
from istio_sandbox.store import Obj, now_iso

PODS = BY_KEY["/pods"]
NAMESPACES = BY_KEY["/namespaces"]
EVENTS = BY_KEY["/events"]
DEPLOYMENTS = BY_KEY["apps/deployments"]
REPLICASETS = BY_KEY["apps/replicasets"]
STATEFULSETS = BY_KEY["apps/statefulsets"]
DAEMONSETS = BY_KEY["apps/daemonsets"]
JOBS = BY_KEY["batch/jobs"]
WEBHOOKS = BY_KEY["admissionregistration.k8s.io/mutatingwebhookconfigurations"]
ROLLOUTS = ResourceType(
    group="argoproj.io",
    version="v1alpha1",
    kind="Rollout",
    plural="rollouts",
    namespaced=True,
    short_names=("ro",),
    subresources=("status", "scale"),
    singular="rollout",
)
"""Argo Rollouts' kind, served once its CRD ``rollouts.argoproj.io`` exists (same store key)."""
GATEWAYS = ResourceType(
    group="gateway.networking.k8s.io",
    version="v1",
    kind="Gateway",
    plural="gateways",
    namespaced=True,
    short_names=("gtw",),
    subresources=("status",),
    categories=("gateway-api",),
    singular="gateway",
)
"""Gateway API's Gateway, served once its CRD exists (same store key)."""

# The alphabet of Kubernetes' rand.SafeEncodeString: no vowels, so generated names never spell
# words, and no look-alike characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def meta(obj: Obj) -> dict[str, Any]:
    m: dict[str, Any] = obj.setdefault("metadata", {})
    return m


def labels_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def template_hash(template: Obj) -> str:
    """A stable short hash of a pod template, encoded like ``pod-template-hash`` values."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    value = int.from_bytes(digest[:4], "big")
    chars = []
    for _ in range(10):
        value, rem = divmod(value, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
        if value == 0:
            break
    return "".join(chars)


def random_suffix(length: int = 5) -> str:
    """The random tail of generated pod names (``web-7d9c8f5b6-x2k4z``)."""
    return "".join(random.choice(_SAFE_ALPHABET) for _ in range(length))


def owner_reference(owner: Obj, rt: ResourceType) -> Obj:
    m = owner["metadata"]
    return {
        "apiVersion": rt.api_version,
        "kind": rt.kind,
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """Resolve ``maxSurge``/``maxUnavailable`` (``3`` or ``"25%"``) against ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        share = float(text[:-1]) * total / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(text)


def condition(obj: Obj, ctype: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(
    status: Obj,
    ctype: str,
    cstatus: str,
    reason: str,
    message: str,
    *,
    with_update_time: bool = True,
    touch: bool = False,
) -> None:
    """Set a condition; ``lastTransitionTime`` moves only when status changes, as upstream.

    Args:
        status: The ``status`` dict to edit.
        ctype: Condition type.
        cstatus: ``"True"``/``"False"``.
        reason: CamelCase reason.
        message: Human message.
        with_update_time: Also keep ``lastUpdateTime`` (Deployment conditions have it).
        touch: Refresh ``lastUpdateTime`` even if nothing else changed (progress was made).
    """
    conds: list[Obj] = status.setdefault("conditions", [])
    now = now_iso()
    for cond in conds:
        if cond.get("type") != ctype:
            continue
        same = (cond.get("status"), cond.get("reason"), cond.get("message")) == (
            cstatus,
            reason,
            message,
        )
        if same and not touch:
            return
        if cond.get("status") != cstatus:
            cond["lastTransitionTime"] = now
        cond.update(status=cstatus, reason=reason, message=message)
        if with_update_time:
            cond["lastUpdateTime"] = now
        return
    new: Obj = {"type": ctype, "status": cstatus, "reason": reason, "message": message}
    if with_update_time:
        new["lastUpdateTime"] = now
    new["lastTransitionTime"] = now
    conds.append(new)


def remove_condition(status: Obj, ctype: str) -> None:
    conds = status.get("conditions")
    if conds:
        status["conditions"] = [c for c in conds if c.get("type") != ctype]


def is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_active(pod: Obj) -> bool:
    """Counted by its controller: neither terminating nor finished."""
    return not is_terminating(pod) and pod_phase(pod) not in ("Succeeded", "Failed")


def is_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def pod_from_template(
    owner: Obj, owner_rt: ResourceType, template: Obj, name: str, extra_labels: dict[str, str]
) -> Obj:
    """A Pod as a workload controller would create it from ``spec.template``."""
    tmeta = template.get("metadata") or {}
    spec = json.loads(json.dumps(template.get("spec") or {}))
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    pod_meta: Obj = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": {**(tmeta.get("labels") or {}), **extra_labels},
        "ownerReferences": [owner_reference(owner, owner_rt)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def drop_zeros(status: Obj, *keys: str) -> Obj:
    """Omit zero counters, as the API's ``omitempty`` int32 status fields do."""
    for key in keys:
        if not status.get(key):
            status.pop(key, None)
    return status


def iso_age_s(timestamp: str | None) -> float:
    """Seconds since an RFC 3339 timestamp written by :func:`now_iso`; 0 when absent."""
    if not timestamp:
        return 0.0
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()
