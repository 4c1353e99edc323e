"""Create-time defaulting and validation of workloads, as the API server applies them.

Registered as store admission so objects created through HTTP and in-process get the same
``spec`` the real API would return (``kubectl rollout status`` refuses a StatefulSet without
``updateStrategy.type``, for one).
"""

from __future__ import annotations

from istio_sandbox.api.selectors import SelectorError, match_label_selector
from istio_sandbox.controllers.objects import DAEMONSETS, DEPLOYMENTS, JOBS, STATEFULSETS
from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Invalid, Obj, Store


def _check_selector(rt: ResourceType, obj: Obj) -> None:
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        raise Invalid(
            f'{rt.kind}.{rt.group} "{name}" is invalid: spec.selector: Required value',
            rt=rt,
            name=name,
        )
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    try:
        ok = match_label_selector(selector, tlabels)
    except SelectorError as err:
        raise Invalid(
            f'{rt.kind}.{rt.group} "{name}" is invalid: spec.selector: {err}', rt=rt, name=name
        ) from None
    if not ok:
        raise Invalid(
            f'{rt.kind}.{rt.group} "{name}" is invalid: spec.template.metadata.labels: Invalid '
            f"value: {tlabels}: `selector` does not match template `labels`",
            rt=rt,
            name=name,
        )


def default_deployment(obj: Obj) -> Obj:
    _check_selector(DEPLOYMENTS, obj)
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxSurge", "25%")
        ru.setdefault("maxUnavailable", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    return obj


def default_statefulset(obj: Obj) -> Obj:
    _check_selector(STATEFULSETS, obj)
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    return obj


def default_daemonset(obj: Obj) -> Obj:
    _check_selector(DAEMONSETS, obj)
    spec = obj["spec"]
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    return obj


def default_job(obj: Obj) -> Obj:
    spec = obj.setdefault("spec", {})
    name = obj["metadata"].get("name", "")
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if not spec.get("manualSelector"):
        tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
        tmeta.setdefault("labels", {}).update(
            {"batch.kubernetes.io/job-name": name, "job-name": name}
        )
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/job-name": name}})
    return obj


def register(store: Store) -> None:
    """Install the defaulting admission functions on ``store``."""
    store.add_admission(DEPLOYMENTS.key, default_deployment)
    store.add_admission(STATEFULSETS.key, default_statefulset)
    store.add_admission(DAEMONSETS.key, default_daemonset)
    store.add_admission(JOBS.key, default_job)
