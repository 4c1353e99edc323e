"""``meta.k8s.io/v1 Table`` rendering, what ``kubectl get`` asks for and prints.

Columns follow the API server's printers for the kinds operators look at most; every other
kind gets NAME and AGE. Priority-1 columns appear only with ``kubectl get -o wide``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Obj

Column = tuple[str, str, int, str]
"""(name, type, priority, description)."""
Row = Callable[[Obj], list[Any]]

TABLE_ACCEPT = "as=Table"


def wants_table(accept: str) -> bool:
    """Whether an ``Accept`` header asks for Table output first (kubectl get does)."""
    first = accept.split(",")[0]
    return TABLE_ACCEPT in first.replace(" ", "")


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """Kubernetes' short human duration (``45s``, ``5m``, ``3h``, ``2d``) since ``timestamp``."""
    if not timestamp:
        return "<unknown>"
    try:
        # Time (``...:05Z``) or MicroTime (``...:05.123456Z``, an Event's eventTime).
        then = datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S")
        then = then.replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _pod_row(obj: Obj) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        terminated = (s.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason") and reason == "Running":
            reason = terminated["reason"]
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    return [
        meta.get("name", ""),
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        age(meta.get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _containers(obj: Obj) -> tuple[str, str]:
    containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    containers = containers or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def _selector(obj: Obj) -> str:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def _deployment_row(obj: Obj) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    names, images = _containers(obj)
    return [
        meta.get("name", ""),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(meta.get("creationTimestamp")),
        names,
        images,
        _selector(obj),
    ]


def _replicaset_row(obj: Obj) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    names, images = _containers(obj)
    return [
        meta.get("name", ""),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(meta.get("creationTimestamp")),
        names,
        images,
        _selector(obj),
    ]


def _statefulset_row(obj: Obj) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    names, images = _containers(obj)
    ready = f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
    return [meta.get("name", ""), ready, age(meta.get("creationTimestamp")), names, images]


def _daemonset_row(obj: Obj) -> list[Any]:
    status, meta = obj.get("status") or {}, _meta(obj)
    names, images = _containers(obj)
    return [
        meta.get("name", ""),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        age(meta.get("creationTimestamp")),
        names,
        images,
    ]


def _namespace_row(obj: Obj) -> list[Any]:
    meta = _meta(obj)
    phase = (obj.get("status") or {}).get("phase", "Active")
    return [meta.get("name", ""), phase, age(meta.get("creationTimestamp"))]


def _node_row(obj: Obj) -> list[Any]:
    meta, status = _meta(obj), obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in meta.get("labels") or {} if k.startswith(prefix))
    info = status.get("nodeInfo") or {}
    internal = next(
        (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"),
        "<none>",
    )
    return [
        meta.get("name", ""),
        state,
        ",".join(roles) or "<none>",
        age(meta.get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        internal,
        "<none>",
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _service_row(obj: Obj) -> list[Any]:
    spec, meta = obj.get("spec") or {}, _meta(obj)
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
    return [
        meta.get("name", ""),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        age(meta.get("creationTimestamp")),
        selector or "<none>",
    ]


def _job_row(obj: Obj) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    state = "Complete" if status.get("succeeded") else "Running"
    if any(c.get("type") == "Failed" for c in status.get("conditions") or []):
        state = "Failed"
    return [
        meta.get("name", ""),
        state,
        f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}",
        age(meta.get("creationTimestamp")),
    ]


def _event_row(obj: Obj) -> list[Any]:
    """A core/v1 or an events.k8s.io/v1 Event (``regarding``, ``note``, ``deprecated*``)."""
    meta = _meta(obj)
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    last = (
        obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or obj.get("eventTime")
        or meta.get("creationTimestamp")
    )
    kind = str(involved.get("kind", "")).lower()
    return [
        age(last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{kind}/{involved.get('name', '')}",
        obj.get("message", obj.get("note", "")),
        meta.get("name", ""),
    ]


def _configmap_row(obj: Obj) -> list[Any]:
    meta = _meta(obj)
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [meta.get("name", ""), count, age(meta.get("creationTimestamp"))]


def _generic_row(obj: Obj) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), age(meta.get("creationTimestamp"))]


def _path(obj: Obj, *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        cur = cur.get(key) if isinstance(cur, dict) else None
    return "" if cur is None else cur


def _cond_status(obj: Obj, ctype: str) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return str(cond.get("status", ""))
    return ""


# The Sail CRDs' additionalPrinterColumns (chart/crds/sailoperator.io_*.yaml).
def _istio_row(obj: Obj) -> list[Any]:
    revs = ("status", "revisions")
    return [_meta(obj).get("name", ""), _path(obj, "spec", "namespace"),
            _path(obj, "spec", "profile"), str(_path(obj, *revs, "total")),
            str(_path(obj, *revs, "ready")), str(_path(obj, *revs, "inUse")),
            _path(obj, "status", "activeRevisionName"), _path(obj, "status", "state"),
            _path(obj, "spec", "version"), age(_meta(obj).get("creationTimestamp"))]  # fmt: skip


def _istiorevision_row(obj: Obj) -> list[Any]:
    return [_meta(obj).get("name", ""), _path(obj, "spec", "namespace"),
            _path(obj, "spec", "values", "profile"), _cond_status(obj, "Ready"),
            _path(obj, "status", "state"), _cond_status(obj, "InUse"),
            _path(obj, "spec", "version"), age(_meta(obj).get("creationTimestamp"))]  # fmt: skip


def _istiorevisiontag_row(obj: Obj) -> list[Any]:
    return [_meta(obj).get("name", ""), _path(obj, "status", "state"),
            _cond_status(obj, "InUse"), _path(obj, "status", "istioRevision"),
            age(_meta(obj).get("creationTimestamp"))]  # fmt: skip


def _istiocni_row(obj: Obj) -> list[Any]:
    return [_meta(obj).get("name", ""), _path(obj, "spec", "namespace"),
            _path(obj, "spec", "profile"), _cond_status(obj, "Ready"),
            _path(obj, "status", "state"), _path(obj, "spec", "version"),
            age(_meta(obj).get("creationTimestamp"))]  # fmt: skip


def _ztunnel_row(obj: Obj) -> list[Any]:
    return [_meta(obj).get("name", ""), _path(obj, "spec", "namespace"),
            _cond_status(obj, "Ready"), _path(obj, "status", "state"),
            _path(obj, "spec", "version"), _path(obj, "status", "istioRevision"),
            age(_meta(obj).get("creationTimestamp"))]  # fmt: skip


_NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: Column = ("Age", "string", 0, "Time since the object was created.")
_CONTAINERS: list[Column] = [
    ("Containers", "string", 1, "Names of each container in the template."),
    ("Images", "string", 1, "Images referenced by each container in the template."),
]
_TABLES: dict[str, tuple[list[Column], Row]] = {
    "pods": (
        [
            _NAME,
            ("Ready", "string", 0, "Ready containers / containers."),
            ("Status", "string", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "integer", 0, "Container restarts."),
            _AGE,
            ("IP", "string", 1, "Pod IP."),
            ("Node", "string", 1, "Node the pod is scheduled on."),
            ("Nominated Node", "string", 1, "Nominated node."),
            ("Readiness Gates", "string", 1, "Readiness gates."),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            _NAME,
            ("Ready", "string", 0, "Number of ready pods / desired pods."),
            ("Up-to-date", "integer", 0, "Pods updated to the latest template."),
            ("Available", "integer", 0, "Pods available to serve."),
            _AGE,
            *_CONTAINERS,
            ("Selector", "string", 1, "Label selector of the pods."),
        ],
        _deployment_row,
    ),
    "replicasets": (
        [
            _NAME,
            ("Desired", "integer", 0, "Desired replicas."),
            ("Current", "integer", 0, "Current replicas."),
            ("Ready", "integer", 0, "Ready replicas."),
            _AGE,
            *_CONTAINERS,
            ("Selector", "string", 1, "Label selector of the pods."),
        ],
        _replicaset_row,
    ),
    "statefulsets": (
        [_NAME, ("Ready", "string", 0, "Ready pods / desired pods."), _AGE, *_CONTAINERS],
        _statefulset_row,
    ),
    "daemonsets": (
        [
            _NAME,
            ("Desired", "integer", 0, "Desired pods."),
            ("Current", "integer", 0, "Scheduled pods."),
            ("Ready", "integer", 0, "Ready pods."),
            ("Up-to-date", "integer", 0, "Pods updated to the latest template."),
            ("Available", "integer", 0, "Available pods."),
            _AGE,
            *_CONTAINERS,
        ],
        _daemonset_row,
    ),
    "namespaces": ([_NAME, ("Status", "string", 0, "Namespace phase."), _AGE], _namespace_row),
    "nodes": (
        [
            _NAME,
            ("Status", "string", 0, "The status of the node."),
            ("Roles", "string", 0, "The roles of the node."),
            _AGE,
            ("Version", "string", 0, "Kubelet version."),
            ("Internal-IP", "string", 1, "Internal IP of the node."),
            ("External-IP", "string", 1, "External IP of the node."),
            ("OS-Image", "string", 1, "OS image reported by the node."),
            ("Kernel-Version", "string", 1, "Kernel version reported by the node."),
            ("Container-Runtime", "string", 1, "Container runtime reported by the node."),
        ],
        _node_row,
    ),
    "configmaps": ([_NAME, ("Data", "integer", 0, "Number of data keys."), _AGE], _configmap_row),
    "events": (
        [
            ("Last Seen", "string", 0, "Time of the last occurrence."),
            ("Type", "string", 0, "Normal or Warning."),
            ("Reason", "string", 0, "Why the event happened."),
            ("Object", "string", 0, "The object the event is about."),
            ("Message", "string", 0, "Human-readable description."),
            ("Name", "string", 1, "Event name."),
        ],
        _event_row,
    ),
    "services": (
        [
            _NAME,
            ("Type", "string", 0, "Service type."),
            ("Cluster-IP", "string", 0, "Cluster IP."),
            ("External-IP", "string", 0, "External IPs."),
            ("Port(s)", "string", 0, "Ports."),
            _AGE,
            ("Selector", "string", 1, "Pod selector."),
        ],
        _service_row,
    ),
    "jobs": (
        [
            _NAME,
            ("Status", "string", 0, "Job status."),
            ("Completions", "string", 0, "Succeeded / desired completions."),
            _AGE,
        ],
        _job_row,
    ),
    "istios": (
        [_NAME, ("Namespace", "string", 0, "The namespace for the control plane components."),
         ("Profile", "string", 0, "The selected profile."),
         ("Revisions", "string", 0, "Total number of IstioRevision objects."),
         ("Ready", "string", 0, "Number of revisions that are ready."),
         ("In use", "string", 0, "Number of revisions that are in use."),
         ("Active Revision", "string", 0, "The name of the currently active revision."),
         ("Status", "string", 0, "The current state of the active revision."),
         ("Version", "string", 0, "The version of the control plane installation."), _AGE],
        _istio_row,
    ),
    "istiorevisions": (
        [_NAME, ("Namespace", "string", 0, "The namespace for the control plane components."),
         ("Profile", "string", 0, "The selected profile."),
         ("Ready", "string", 0, "Whether the control plane installation is ready."),
         ("Status", "string", 0, "The current state of this object."),
         ("In use", "string", 0, "Whether the revision is being used by workloads."),
         ("Version", "string", 0, "The version of the control plane installation."), _AGE],
        _istiorevision_row,
    ),
    "istiorevisiontags": (
        [_NAME, ("Status", "string", 0, "The current state of this object."),
         ("In use", "string", 0, "Whether the tag is being used by workloads."),
         ("Revision", "string", 0, "The IstioRevision this object is referencing."), _AGE],
        _istiorevisiontag_row,
    ),
    "istiocnis": (
        [_NAME, ("Namespace", "string", 0, "The namespace of the istio-cni-node DaemonSet."),
         ("Profile", "string", 0, "The selected profile."),
         ("Ready", "string", 0, "Whether the istio-cni-node pods are ready."),
         ("Status", "string", 0, "The current state of this object."),
         ("Version", "string", 0, "The version of the Istio CNI installation."), _AGE],
        _istiocni_row,
    ),
    "ztunnels": (
        [_NAME, ("Namespace", "string", 0, "The namespace of the ztunnel DaemonSet."),
         ("Ready", "string", 0, "Whether the ztunnel pods are ready."),
         ("Status", "string", 0, "The current state of this object."),
         ("Version", "string", 0, "The version of the Istio ztunnel installation."),
         ("Revision", "string", 0, "The IstioRevision the ztunnel connects to."), _AGE],
        _ztunnel_row,
    ),
}  # fmt: skip


def _column_defs(columns: list[Column]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": typ,
            "format": "name" if name == "Name" else "",
            "description": desc,
            "priority": prio,
        }
        for name, typ, prio, desc in columns
    ]


def _row_object(rt: ResourceType, obj: Obj, include: str) -> dict[str, Any]:
    if include == "Object":
        return obj
    if include == "None":
        return {}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    rt: ResourceType,
    objects: Iterable[Obj],
    *,
    list_meta: dict[str, Any] | None = None,
    include_object: str = "",
    with_columns: bool = True,
) -> dict[str, Any]:
    """Render objects of one type as a ``Table``."""
    columns, row = _TABLES.get(rt.plural, ([_NAME, _AGE], _generic_row))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": _column_defs(columns) if with_columns else [],
        "rows": [
            {"cells": row(obj), "object": _row_object(rt, obj, include_object)} for obj in objects
        ],
    }
