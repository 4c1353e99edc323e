"""The Sail Operator (``sailoperator.io/v1``) as the sandbox runs it.

Written from istio-ecosystem/sail-operator:

- ``controllers/istio``: an ``Istio`` owns one active ``IstioRevision`` named after the Istio
  (``InPlace``) or ``<istio>-<version with dashes>`` (``RevisionBased``); its status copies the
  active revision's Reconciled/Ready/DependenciesHealthy conditions and counts the revisions it
  owns; ``pkg/revision/prune.go`` deletes owned, non-active revisions whose ``InUse`` condition
  has been ``False`` for ``inactiveRevisionDeletionGracePeriodSeconds`` (default 30).
- ``controllers/istiorevision``: renders the istiod chart with ``revision`` = the revision's
  name (``""`` for ``default``); ``Ready`` once istiod's pods are all ready; ``InUse`` when a
  tag, a namespace (``istio-injection=enabled`` means ``default``, else ``istio.io/rev``) or a
  non-succeeded pod (annotation ``istio.io/rev``, or its labels in an unlabelled namespace)
  references it.
- ``controllers/istiorevisiontag``: a tag targets an Istio (its active revision) or an
  IstioRevision and installs the revision-tags chart (``istio-revision-tag-<tag>`` + Service);
  the ``default`` tag also installs the base chart with ``defaultRevision`` = its revision,
  i.e. ``istiod-default-validator`` follows the tag.
- ``controllers/istiocni`` and ``controllers/ztunnel``: DaemonSets upgraded in place to
  ``spec.version``.

Differences: the controller reconciles everything in one pass (the real one runs a queue per
kind), reads the just-computed active revision of an Istio instead of waiting for its status,
and the CRD schema checks are the ones in :meth:`SailOperator.validate`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from istio_sandbox.controllers import defaults
from istio_sandbox.controllers.objects import (
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    condition,
    labels_of,
    owner_reference,
    set_condition,
)
from istio_sandbox.istio.ambient import render_istio_cni, render_ztunnel
from istio_sandbox.istio.charts import render_default_validator, render_istiod, render_tag
from istio_sandbox.istio.names import ISTIO_NAMESPACE
from istio_sandbox.istio.sail_crds import (
    API_VERSION,
    DEFAULT_GRACE_PERIOD_S,
    DEFAULT_REVISION,
    DEFAULT_VERSION,
    END_OF_LIFE,
    ISTIO_CNIS,
    ISTIO_REVISION_TAGS,
    ISTIO_REVISIONS,
    ISTIOS,
    PROFILES,
    SAIL_TYPES,
    TARGET_KINDS,
    UPDATE_STRATEGIES,
    VERSIONS,
    ZTUNNELS,
    chart_revision,
    image_version,
    resolve_version,
    revision_name,
)
from istio_sandbox.resources import ResourceType, by_kind
from istio_sandbox.store import Invalid, NotFound, Obj, Store, StoreError, WatchEvent, clone

Scheduler = Callable[[float, Callable[[], None]], None]

_SAIL_KEYS = frozenset(rt.key for rt in SAIL_TYPES)
_WATCHED_KEYS = frozenset({NAMESPACES.key, PODS.key, DEPLOYMENTS.key, DAEMONSETS.key})
DEBOUNCE_S = 0.05
"""Changes arriving within this delay are reconciled in one pass."""
CNI_NAME = ZTUNNEL_NAME = "default"
"""The only names the IstioCNI and ZTunnel controllers accept (``istioCniName``)."""
_INJECTION = "istio-injection"
_REV = "istio.io/rev"
_INJECT = "sidecar.istio.io/inject"


class ReconcileError(Exception):
    """An error Sail reports in a ``Reconciled=False`` condition (and retries)."""

    def __init__(self, message: str, reason: str = "ReconcileError") -> None:
        super().__init__(message)
        self.reason = reason


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))


def _ts(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _older(a: Obj, b: Obj) -> bool:
    """pkg/validation ResourceTakesPrecedence: earlier creation, then the smaller uid."""
    ka = (_meta(a).get("creationTimestamp", ""), _meta(a).get("uid", ""))
    kb = (_meta(b).get("creationTimestamp", ""), _meta(b).get("uid", ""))
    return ka < kb


def referenced_revision_of_namespace(labels: dict[str, str]) -> str:
    """pkg/revision GetReferencedRevisionFromNamespace: ``istio-injection=enabled`` beats
    ``istio.io/rev`` and means ``default``."""
    if labels.get(_INJECTION) == "enabled":
        return DEFAULT_REVISION
    return labels.get(_REV, "")


def referenced_revision_of_pod(labels: dict[str, str]) -> str:
    """pkg/revision GetReferencedRevisionFromPod (labels only)."""
    if labels.get(_INJECT) != "false":
        if labels.get(_REV):
            return labels[_REV]
        if labels.get(_INJECT) == "true":
            return DEFAULT_REVISION
    return ""


class SailOperator:
    """Reconciles every Sail resource of one store.

    Example:
        >>> sail = SailOperator(store, schedule=runtime.after)
        >>> store.add_validation(sail.validate)
        >>> runtime.change_hooks.append(sail.on_change)
        >>> sail.sync()   # one full pass (the scenario loader calls it directly)
    """

    def __init__(
        self,
        store: Store,
        schedule: Scheduler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.schedule = schedule
        self.clock = clock
        self._scheduled = False
        self._sweep = True
        self._applied: dict[tuple[str, str, str], str] = {}
        """(type key, namespace, name) → digest of the rendering last written (helm's release:
        objects are rewritten only when the rendering changes, so other controllers' edits
        such as istiod's ``failurePolicy`` patch on validators survive)."""
        self._prune_at: float | None = None

    # -- wiring ------------------------------------------------------------------------------

    def active(self) -> bool:
        """Whether any Sail resource exists (otherwise the controller has nothing to do)."""
        return any(self.store.count(rt) for rt in SAIL_TYPES)

    def prime(self) -> None:
        """Reconcile what existed before the controllers started."""
        if self.active():
            self._queue(0.0)

    def on_change(self, ev: WatchEvent) -> None:
        """Store notification: queue a pass for changes Sail's controllers watch."""
        key = ev.rt.key
        if key in _SAIL_KEYS:
            if ev.type == "DELETED":
                self._sweep = True
            self._queue(DEBOUNCE_S)
        elif key in _WATCHED_KEYS and self.active():
            self._queue(DEBOUNCE_S)

    def _queue(self, delay: float) -> None:
        if self._scheduled or self.schedule is None:
            return
        self._scheduled = True
        self.schedule(delay, self.sync)

    # -- admission (the CRDs' schema: enums, defaults, immutability) ---------------------------

    def validate(self, rt: ResourceType, operation: str, obj: Obj, old: Obj | None) -> None:
        """Default and check a Sail object as its CRD schema does; raises Invalid."""
        if rt.key not in _SAIL_KEYS:
            return
        spec = obj.setdefault("spec", {})
        errors: list[str] = []
        kind = rt.kind
        if kind in ("Istio", "IstioRevision", "IstioCNI", "ZTunnel"):
            if kind != "IstioRevision":
                spec.setdefault("version", DEFAULT_VERSION)
            spec.setdefault(
                "namespace",
                {"IstioCNI": "istio-cni", "ZTunnel": "ztunnel"}.get(kind, ISTIO_NAMESPACE),
            )
            _enum(errors, "spec.version", spec.get("version"), VERSIONS)
            if spec.get("profile") is not None:
                _enum(errors, "spec.profile", spec.get("profile"), PROFILES)
            if old is not None and kind != "IstioRevision":
                before = _spec(old).get("namespace")
                if before is not None and spec.get("namespace") != before:
                    errors.append('spec.namespace: Invalid value: "string": Value is immutable')
        if kind == "Istio":
            strategy = spec.setdefault("updateStrategy", {"type": "InPlace"})
            if not isinstance(strategy, dict):
                errors.append("spec.updateStrategy: Invalid value: must be an object")
            else:
                strategy.setdefault("type", "InPlace")
                _enum(errors, "spec.updateStrategy.type", strategy.get("type"), UPDATE_STRATEGIES)
                grace = strategy.get("inactiveRevisionDeletionGracePeriodSeconds")
                field = "spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds"
                if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
                    errors.append(f'{field}: Invalid value: "{grace}": must be an integer')
                elif grace is not None and grace < 0:
                    errors.append(
                        f"{field}: Invalid value: {grace}: {field} in body should be greater "
                        "than or equal to 0"
                    )
        if kind == "IstioRevisionTag":
            ref = spec.get("targetRef")
            if not isinstance(ref, dict):
                errors.append("spec.targetRef: Required value")
            else:
                _enum(errors, "spec.targetRef.kind", ref.get("kind"), TARGET_KINDS)
                if not ref.get("name"):
                    errors.append("spec.targetRef.name: Required value")
        if errors:
            name = _name(obj)
            raise Invalid(
                f'{kind}.{rt.group} "{name}" is invalid: ' + ", ".join(errors), rt=rt, name=name
            )

    # -- the reconcile pass ------------------------------------------------------------------

    def sync(self) -> None:
        """Reconcile every Istio, IstioRevision, IstioRevisionTag, IstioCNI and ZTunnel."""
        self._scheduled = False
        if not self.active():
            if self._sweep:
                self._sweep_orphans()
            return
        now = self.clock()
        istio_errors: dict[str, ReconcileError | None] = {}
        active: dict[str, str] = {}
        for istio in self.store.list(ISTIOS):
            try:
                active[_name(istio)] = self._reconcile_istio(istio)
                istio_errors[_name(istio)] = None
            except ReconcileError as err:
                istio_errors[_name(istio)] = err
        revisions = {_name(r): r for r in self.store.list(ISTIO_REVISIONS)}
        tags = self.store.list(ISTIO_REVISION_TAGS)
        rev_errors: dict[str, ReconcileError | None] = {}
        for name, rev in revisions.items():
            try:
                self._reconcile_revision(rev, tags)
                rev_errors[name] = None
            except ReconcileError as err:
                rev_errors[name] = err
        tag_targets: dict[str, str] = {}
        tag_errors: dict[str, ReconcileError | None] = {}
        for tag in tags:
            try:
                tag_targets[_name(tag)] = self._reconcile_tag(tag, revisions, active)
                tag_errors[_name(tag)] = None
            except ReconcileError as err:
                tag_errors[_name(tag)] = err
        namespaces = {_name(n): labels_of(n) for n in self.store.list(NAMESPACES)}
        pods = self.store.list(PODS, copy_objects=False)
        for tag in tags:
            self._tag_status(tag, tag_targets, tag_errors[_name(tag)], namespaces, pods)
        for name, rev in revisions.items():
            self._revision_status(rev, rev_errors[name], tag_targets, namespaces, pods)
        for istio in self.store.list(ISTIOS):
            self._istio_status(istio, istio_errors[_name(istio)], active.get(_name(istio)))
        self._prune(now)
        for rt, kind_name in ((ISTIO_CNIS, CNI_NAME), (ZTUNNELS, ZTUNNEL_NAME)):
            for obj in self.store.list(rt):
                self._reconcile_node_agent(rt, obj, kind_name, active)
        if self._sweep:
            self._sweep_orphans()

    # -- Istio -------------------------------------------------------------------------------

    def _reconcile_istio(self, istio: Obj) -> str:
        """Create or update the active IstioRevision; returns its name."""
        spec = _spec(istio)
        version = str(spec.get("version") or "")
        namespace = str(spec.get("namespace") or "")
        if not version:
            raise ReconcileError("spec.version not set")
        if not namespace:
            raise ReconcileError("spec.namespace not set")
        _check_installable(version)
        strategy = str((spec.get("updateStrategy") or {}).get("type") or "InPlace")
        name = revision_name(_name(istio), version, strategy)
        values = clone(spec.get("values") or {})
        if spec.get("profile"):
            values["profile"] = spec["profile"]
        # pkg/istiovalues ApplyOverrides: revision and istioNamespace are the operator's.
        values["revision"] = chart_revision(name)
        values.setdefault("global", {})["istioNamespace"] = namespace
        values.pop("defaultRevision", None)
        desired_spec = {"version": resolve_version(version), "namespace": namespace,
                        "values": values}  # fmt: skip
        owner = [owner_reference(istio, ISTIOS)]
        current = self.store.try_get(ISTIO_REVISIONS, "", name)
        if current is None:
            self.store.create(
                ISTIO_REVISIONS,
                {"metadata": {"name": name, "ownerReferences": owner}, "spec": desired_spec},
            )
        elif current.get("spec") != desired_spec or _meta(current).get("ownerReferences") != owner:
            current["spec"] = desired_spec
            current["metadata"]["ownerReferences"] = owner
            current["metadata"].pop("resourceVersion", None)
            self.store.update(ISTIO_REVISIONS, current)
        return name

    def _istio_status(self, istio: Obj, err: ReconcileError | None, active: str | None) -> None:
        status = clone(istio.get("status") or {})
        status["observedGeneration"] = _meta(istio).get("generation", 1)
        if err is not None or active is None:
            message = str(err) if err else "not reconciled"
            _cond(status, "Reconciled", "False", "ReconcileError", message)
            _cond(status, "Ready", "Unknown", "ReconcileError",
                  "cannot determine readiness due to reconciliation error")  # fmt: skip
            status["state"] = "ReconcileError"
        else:
            status["activeRevisionName"] = active
            rev = self.store.try_get(ISTIO_REVISIONS, "", active)
            if rev is None:
                for ctype in ("Reconciled", "Ready"):
                    _cond(status, ctype, "False", "ActiveRevisionNotFound",
                          "active IstioRevision not found")  # fmt: skip
                status["state"] = "ActiveRevisionNotFound"
            else:
                for ctype in ("Reconciled", "Ready", "DependenciesHealthy"):
                    c = condition(rev, ctype)
                    if c is not None:
                        _cond(status, ctype, c["status"], c.get("reason", ""),
                              c.get("message", ""))  # fmt: skip
                status["state"] = (rev.get("status") or {}).get("state", "")
        owned = self._owned_revisions(istio)
        status["revisions"] = {
            "total": len(owned),
            "ready": sum(1 for r in owned if _is_true(r, "Ready")),
            "inUse": sum(1 for r in owned if _is_true(r, "InUse")),
        }
        self._set_status(ISTIOS, istio, status)

    def _owned_revisions(self, istio: Obj) -> list[Obj]:
        uid = _meta(istio).get("uid")
        return [
            r
            for r in self.store.list(ISTIO_REVISIONS, copy_objects=False)
            if any(ref.get("uid") == uid for ref in _meta(r).get("ownerReferences") or [])
        ]

    def _prune(self, now: float) -> None:
        """pkg/revision/prune.go PruneInactive, for every Istio; re-runs at the next expiry."""
        next_at: float | None = None
        for istio in self.store.list(ISTIOS, copy_objects=False):
            spec = _spec(istio)
            pilot_env = ((spec.get("values") or {}).get("pilot") or {}).get("env") or {}
            if pilot_env.get("EXTERNAL_ISTIOD") == "true":
                continue
            strategy = spec.get("updateStrategy") or {}
            grace = strategy.get("inactiveRevisionDeletionGracePeriodSeconds")
            grace_s = max(int(DEFAULT_GRACE_PERIOD_S if grace is None else grace), 0)
            active = revision_name(
                _name(istio), str(spec.get("version", "")), str(strategy.get("type", "InPlace"))
            )
            for rev in self._owned_revisions(istio):
                if _name(rev) == active:
                    continue
                in_use = condition(rev, "InUse")
                if in_use is None or in_use.get("status") != "False":
                    continue
                due = _ts(in_use.get("lastTransitionTime")) + grace_s
                if due <= now:
                    with contextlib.suppress(NotFound):
                        self.store.delete(ISTIO_REVISIONS, "", _name(rev))
                else:
                    next_at = due if next_at is None else min(next_at, due)
        if next_at is not None and self.schedule is not None and next_at != self._prune_at:
            self._prune_at = next_at
            self.schedule(max(next_at - now, 0.0), self._prune_due)

    def _prune_due(self) -> None:
        self._prune_at = None
        self._queue(0.0)

    # -- IstioRevision -----------------------------------------------------------------------

    def _reconcile_revision(self, rev: Obj, tags: list[Obj]) -> None:
        name = _name(rev)
        spec = _spec(rev)
        values = spec.get("values") or {}
        chart_rev = values.get("revision")
        if name == DEFAULT_REVISION and chart_rev:
            raise ReconcileError(f'values.revision must be "" when revision name is {name}')
        if name != DEFAULT_REVISION and chart_rev != name:
            raise ReconcileError("values.revision does not match revision name")
        namespace = spec.get("namespace")
        if ((values.get("global") or {}).get("istioNamespace")) != namespace:
            raise ReconcileError("values.global.istioNamespace does not match namespace")
        for tag in tags:
            if _name(tag) == name and _older(tag, rev):
                raise ReconcileError(
                    "an IstioRevisionTag exists with this name", reason="NameAlreadyExists"
                )
        version = str(spec.get("version") or "")
        _check_installable(version)
        self._check_namespace(str(namespace))
        if namespace != ISTIO_NAMESPACE:
            raise ReconcileError(
                f"the sandbox installs istiod into {ISTIO_NAMESPACE} only; "
                f"set spec.namespace to {ISTIO_NAMESPACE}"
            )
        for obj in render_istiod(image_version(version), chart_revision(name)):
            self._apply(obj, rev, ISTIO_REVISIONS)

    def _revision_status(
        self,
        rev: Obj,
        err: ReconcileError | None,
        tag_targets: dict[str, str],
        namespaces: dict[str, dict[str, str]],
        pods: list[Obj],
    ) -> None:
        status = clone(rev.get("status") or {})
        status["observedGeneration"] = _meta(rev).get("generation", 1)
        if err is None:
            reconciled = ("True", "Reconciled", "")
        else:
            message = (
                str(err)
                if err.reason == "NameAlreadyExists"
                else (f"error reconciling resource: {err}")
            )
            reconciled = ("False", err.reason, message)
        ready = self._istiod_ready(rev)
        deps = self._dependencies(rev)
        in_use = self._revision_in_use(rev, tag_targets, namespaces, pods)
        _cond(status, "Reconciled", *reconciled)
        _cond(status, "Ready", *ready)
        _cond(status, "DependenciesHealthy", *deps)
        _cond(status, "InUse", *(
            ("True", "ReferencedByWorkloads", "Referenced by at least one pod or namespace")
            if in_use
            else ("False", "NotReferencedByAnything", "Not referenced by any pod or namespace")
        ))  # fmt: skip
        status["state"] = _derive_state(reconciled, ready, deps)
        self._set_status(ISTIO_REVISIONS, rev, status)

    def _istiod_ready(self, rev: Obj) -> tuple[str, str, str]:
        spec = _spec(rev)
        chart_rev = (spec.get("values") or {}).get("revision") or ""
        name = f"istiod-{chart_rev}" if chart_rev else "istiod"
        dep = self.store.try_get(DEPLOYMENTS, str(spec.get("namespace", "")), name)
        if dep is None:
            return ("False", "IstiodNotReady", "istiod Deployment not found")
        st = dep.get("status") or {}
        replicas = int(st.get("replicas") or 0)
        if replicas == 0:
            return ("False", "IstiodNotReady", "istiod Deployment is scaled to zero replicas")
        if int(st.get("readyReplicas") or 0) < replicas:
            return ("False", "IstiodNotReady", "not all istiod pods are ready")
        return ("True", "Ready", "")

    def _dependencies(self, rev: Obj) -> tuple[str, str, str]:
        values = _spec(rev).get("values") or {}
        ambient = values.get("profile") == "ambient"
        cni_needed = ambient or bool(((values.get("pilot") or {}).get("cni") or {}).get("enabled"))
        checks = [(cni_needed, ISTIO_CNIS, CNI_NAME, "IstioCNI"),
                  (ambient, ZTUNNELS, ZTUNNEL_NAME, "ZTunnel")]  # fmt: skip
        for needed, rt, name, kind in checks:
            if not needed:
                continue
            dep = self.store.try_get(rt, "", name)
            if dep is None:
                return ("False", f"{kind}NotFound", f"{kind} resource does not exist")
            if (dep.get("status") or {}).get("state") != "Healthy":
                message = f"{kind} resource status indicates that the component is not healthy"
                return ("False", f"{kind}NotHealthy", message)
        return ("True", "DependenciesHealthy", "")

    def _revision_in_use(
        self,
        rev: Obj,
        tag_targets: dict[str, str],
        namespaces: dict[str, dict[str, str]],
        pods: list[Obj],
    ) -> bool:
        """controllers/istiorevision isRevisionReferenced."""
        name = _name(rev)
        if name in tag_targets.values():
            return True
        if any(referenced_revision_of_namespace(lb) == name for lb in namespaces.values()):
            return True
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Succeeded":
                continue
            ns_labels = namespaces.get(str(_meta(pod).get("namespace", "")))
            if ns_labels is None:
                continue
            if (_meta(pod).get("annotations") or {}).get(_REV) == name:
                return True
            if not referenced_revision_of_namespace(ns_labels) and (
                referenced_revision_of_pod(labels_of(pod)) == name
            ):
                return True
        values = _spec(rev).get("values") or {}
        by_default = (values.get("sidecarInjectorWebhook") or {}).get("enableNamespacesByDefault")
        return name == DEFAULT_REVISION and bool(by_default)

    # -- IstioRevisionTag --------------------------------------------------------------------

    def _reconcile_tag(self, tag: Obj, revisions: dict[str, Obj], active: dict[str, str]) -> str:
        """Install the tag's webhook and Service for its target; returns the revision."""
        name = _name(tag)
        ref = _spec(tag).get("targetRef") or {}
        kind, target = ref.get("kind"), ref.get("name")
        if not kind or not target:
            raise ReconcileError("spec.targetRef not set")
        same = revisions.get(name)
        if same is not None and _older(same, tag):
            raise ReconcileError("an IstioRevision exists with this name", "NameAlreadyExists")
        if kind == "Istio":
            istio = self.store.try_get(ISTIOS, "", str(target))
            if istio is None:
                raise ReconcileError("referenced Istio resource does not exist", "RefNotFound")
            rev_name = active.get(str(target)) or (istio.get("status") or {}).get(
                "activeRevisionName", ""
            )
            if not rev_name:
                raise ReconcileError("referenced Istio has no active revision")
        else:
            rev_name = str(target)
        rev = revisions.get(rev_name)
        if rev is None:
            what = "IstioRevision" if kind == "IstioRevision" else "active IstioRevision"
            raise ReconcileError(f"referenced {what} resource does not exist", "RefNotFound")
        objects = render_tag(name, chart_revision(rev_name))
        if name == DEFAULT_REVISION:
            # The default tag also installs the base chart with defaultRevision = its revision.
            objects.append(render_default_validator(chart_revision(rev_name)))
        for obj in objects:
            self._apply(obj, tag, ISTIO_REVISION_TAGS)
        return rev_name

    def _tag_status(
        self,
        tag: Obj,
        targets: dict[str, str],
        err: ReconcileError | None,
        namespaces: dict[str, dict[str, str]],
        pods: list[Obj],
    ) -> None:
        name = _name(tag)
        status = clone(tag.get("status") or {})
        status["observedGeneration"] = _meta(tag).get("generation", 1)
        if err is None:
            reconciled = ("True", "Reconciled", "")
            status["istioRevision"] = targets[name]
            rev = self.store.try_get(ISTIO_REVISIONS, "", targets[name])
            status["istiodNamespace"] = _spec(rev or {}).get("namespace", "")
        else:
            reconciled = ("False", err.reason, f"failed to reconcile tag: {err}")
        _cond(status, "Reconciled", *reconciled)
        used = any(
            referenced_revision_of_namespace(lb) == name for lb in namespaces.values()
        ) or any(
            referenced_revision_of_pod(labels_of(p)) == name
            and not referenced_revision_of_namespace(
                namespaces.get(str(_meta(p).get("namespace", "")), {})
            )
            for p in pods
            if (p.get("status") or {}).get("phase") != "Succeeded"
        )
        in_use = (
            ("True", "ReferencedByWorkloads", "Referenced by at least one pod or namespace")
            if used
            else ("False", "NotReferencedByAnything", "Not referenced by any pod or namespace")
        )
        _cond(status, "InUse", *in_use)
        status["state"] = "Healthy" if reconciled[0] == "True" else reconciled[1]
        self._set_status(ISTIO_REVISION_TAGS, tag, status)

    # -- IstioCNI and ZTunnel ----------------------------------------------------------------

    def _reconcile_node_agent(
        self, rt: ResourceType, obj: Obj, required_name: str, active: dict[str, str]
    ) -> None:
        spec = _spec(obj)
        namespace = str(spec.get("namespace") or "")
        status = clone(obj.get("status") or {})
        status["observedGeneration"] = _meta(obj).get("generation", 1)
        daemonset = ""
        try:
            if _name(obj) != required_name:
                raise ReconcileError(f"metadata.name must be {required_name!r}")
            version = str(spec.get("version") or "")
            _check_installable(version)
            self._check_namespace(namespace)
            if rt is ISTIO_CNIS:
                objects = render_istio_cni(image_version(version), namespace=namespace)
            else:
                ref = spec.get("targetRef") or {}
                istio = str(ref.get("name") or DEFAULT_REVISION)
                revision = active.get(istio, "")
                status["istioRevision"] = revision
                objects = render_ztunnel(
                    image_version(version), chart_revision(revision), namespace=namespace
                )
            for child in objects:
                if child["kind"] == "DaemonSet":
                    daemonset = child["metadata"]["name"]
                self._apply(child, obj, rt)
            reconciled = ("True", "Reconciled", "")
        except ReconcileError as err:
            reconciled = ("False", err.reason, f"error reconciling resource: {err}")
        ready = self._daemonset_ready(namespace, daemonset, rt.kind)
        _cond(status, "Reconciled", *reconciled)
        _cond(status, "Ready", *ready)
        status["state"] = _derive_state(reconciled, ready)
        self._set_status(rt, obj, status)

    def _daemonset_ready(self, namespace: str, name: str, kind: str) -> tuple[str, str, str]:
        ds = self.store.try_get(DAEMONSETS, namespace, name) if name else None
        if ds is None:
            return ("False", "DaemonSetNotReady", f"{name or kind} DaemonSet not found")
        st = ds.get("status") or {}
        desired = int(st.get("desiredNumberScheduled") or 0)
        if desired == 0:
            return ("False", "DaemonSetNotReady", "no pods scheduled")
        if (
            int(st.get("numberReady") or 0) < int(st.get("currentNumberScheduled") or 0)
            or int(st.get("updatedNumberScheduled") or 0) < desired
        ):
            return ("False", "DaemonSetNotReady", "not all pods are ready")
        return ("True", "Ready", "")

    # -- helpers -----------------------------------------------------------------------------

    def _check_namespace(self, namespace: str) -> None:
        if self.store.try_get(NAMESPACES, "", namespace) is None:
            raise ReconcileError(f'namespace "{namespace}" doesn\'t exist')

    def _apply(self, obj: Obj, owner: Obj, owner_rt: ResourceType) -> None:
        """Create or replace one rendered object, owned by ``owner`` (helm upgrade)."""
        obj = clone(obj)
        obj["metadata"]["ownerReferences"] = [owner_reference(owner, owner_rt)]
        rt = by_kind(str(obj.get("kind")), str(obj.get("apiVersion")), self.store.custom_types)
        if rt is None:
            raise ReconcileError(f"{obj.get('apiVersion')} {obj.get('kind')} is not served")
        ns = str(obj["metadata"].get("namespace", "")) if rt.namespaced else ""
        key = (rt.key, ns, str(obj["metadata"]["name"]))
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
        current = self.store.try_get(rt, ns, key[2])
        try:
            if current is None:
                self.store.create(rt, obj)
            elif self._applied.get(key) != digest:
                fill = {DEPLOYMENTS.key: defaults.default_deployment,
                        DAEMONSETS.key: defaults.default_daemonset}.get(rt.key)  # fmt: skip
                new = fill(clone(obj)) if fill else clone(obj)
                meta = {**current["metadata"], **new["metadata"]}
                meta.pop("resourceVersion", None)
                new["metadata"] = meta
                self.store.update(rt, new)
        except StoreError as err:
            raise ReconcileError(f"failed to apply {rt.kind} {key[2]}: {err.message}") from None
        self._applied[key] = digest

    def _set_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        if obj.get("status") == status:
            return
        with contextlib.suppress(NotFound):
            self.store.set_status(rt, "", _name(obj), status)

    def _sweep_orphans(self) -> None:
        """Delete objects owned by Sail resources that are gone (the helm uninstall Sail's
        finalizers run, or the garbage collector for owner references)."""
        self._sweep = False
        live = {
            str(_meta(o).get("uid"))
            for rt in SAIL_TYPES
            for o in self.store.list(rt, copy_objects=False)
        }
        for rt in _owned_types(self.store):
            for obj in self.store.list(rt, copy_objects=False):
                refs = [
                    r
                    for r in _meta(obj).get("ownerReferences") or []
                    if r.get("apiVersion") == API_VERSION
                ]
                if refs and not any(str(r.get("uid")) in live for r in refs):
                    m = _meta(obj)
                    with contextlib.suppress(NotFound):
                        self.store.delete(rt, str(m.get("namespace", "")), str(m["name"]))
                    self._applied.pop((rt.key, str(m.get("namespace", "")), str(m["name"])), None)


def _owned_types(store: Store) -> list[ResourceType]:
    """The types the charts Sail installs render."""
    samples = [
        *render_istiod("1.0.0", "x"),
        *render_tag("x", "x"),
        render_default_validator("x"),
        *render_istio_cni("1.0.0"),
        *render_ztunnel("1.0.0"),
    ]
    out: dict[str, ResourceType] = {}
    for obj in samples:
        rt = by_kind(str(obj["kind"]), str(obj["apiVersion"]), store.custom_types)
        if rt is not None:
            out[rt.key] = rt
    return list(out.values())


def _check_installable(version: str) -> None:
    if version not in VERSIONS:
        raise ReconcileError(f"version {version!r} is not supported; use one of {list(VERSIONS)}")
    if version in END_OF_LIFE or resolve_version(version) in END_OF_LIFE:
        raise ReconcileError(
            f"version {version!r} is end-of-life and cannot be installed; use a supported version"
        )


def _enum(errors: list[str], field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        supported = ", ".join(f'"{v}"' for v in allowed)
        errors.append(f'{field}: Unsupported value: "{value}": supported values: {supported}')


def _cond(status: Obj, ctype: str, cstatus: str, reason: str, message: str) -> None:
    set_condition(status, ctype, cstatus, reason, message, with_update_time=False)


def _is_true(obj: Obj, ctype: str) -> bool:
    c = condition(obj, ctype)
    return bool(c and c.get("status") == "True")


def _derive_state(*conditions: tuple[str, str, str]) -> str:
    """pkg/reconciler DeriveState: the reason of the first condition that is not True."""
    for cstatus, reason, _ in conditions:
        if cstatus != "True":
            return reason
    return "Healthy"
