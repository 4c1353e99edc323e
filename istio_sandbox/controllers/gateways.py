"""istiod's gateway deployment controller: a Deployment, Service and ServiceAccount per
Gateway API ``Gateway`` of an Istio class, rendered by the istiod that owns the Gateway.

Upstream: ``pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go`` ``Reconcile`` /
``configureIstioGateway`` / ``apply`` / ``canManage``, and ``pkg/revisions/tag_watcher.go``
``IsMine``: every running istiod decides for itself whether a Gateway is its own:

- the Gateway's ``istio.io/rev`` label, else its namespace's ``istio.io/rev`` label, else
  ``""``, is the *selected tag* (a Gateway whose namespace is unknown is everyone's);
- an istiod's tags are its revision plus every tag webhook (``istio.io/tag`` label) and tag
  Service in istio-system labelled ``istio.io/rev=<its revision>``; a revisionless istiod's
  revision is ``default``;
- it owns the Gateway when the selected tag is one of its tags, or the selected tag is empty
  and it has the ``default`` tag, or it is the default revision (``istiod-default-validator``
  labelled ``istio.io/rev=<it>``) and no ``default`` tag points elsewhere.

Only a Ready istiod acts. When more than one istiod claims a Gateway (a revisionless istiod
and a ``default`` tag on another revision both claim unlabelled Gateways), a real cluster sees
both apply in turn; the sandbox settles it for the istiod the ``default`` tag points at, else
the current owner, else the newest version.

The owner renders ``kube-gateway.yaml`` (class ``istio``: ``<gateway>-istio``) or
``waypoint.yaml`` (class ``istio-waypoint``: the Gateway's name) with its proxy image and
``istio.io/rev`` pod annotation, and applies them; an existing object without the
``gateway.istio.io/managed`` label is left alone. A changed owner re-renders the Deployment's
template, which rolls its pods. The Gateway's status gets ``Accepted`` and ``Programmed``
(``True`` once a pod is Ready) and its Service's address.
"""

from __future__ import annotations

import contextlib

from istio_sandbox.controllers.istiod import deployment_ready, deployment_version
from istio_sandbox.controllers.objects import (
    DEPLOYMENTS,
    GATEWAYS,
    NAMESPACES,
    WEBHOOKS,
    labels_of,
)
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.istio.gateway_api import (
    ANNOTATION_CONTROLLER_VERSION,
    BUILTIN_CLASSES,
    CLASS_INFOS,
    CONTROLLER_VERSION,
    GROUP,
    LABEL_MANAGED,
    ClassInfo,
    deployment_name,
    render_gateway,
    render_gateway_classes,
)
from istio_sandbox.istio.names import (
    DEFAULT_REVISION,
    DEFAULT_VALIDATOR,
    ISTIO_NAMESPACE,
    LABEL_REV,
    LABEL_TAG,
    tag_webhook_name,
)
from istio_sandbox.resources import BY_KEY, ResourceType, by_kind
from istio_sandbox.store import AlreadyExists, NotFound, Obj, WatchEvent, clone, now_iso

SERVICES = BY_KEY["/services"]
VALIDATORS = BY_KEY["admissionregistration.k8s.io/validatingwebhookconfigurations"]
CRDS = BY_KEY["apiextensions.k8s.io/customresourcedefinitions"]


def running_istiods(rt: Runtime) -> dict[str, str]:
    """Ready istiod Deployments in istio-system: revision (``default`` when revisionless) →
    version."""
    out: dict[str, str] = {}
    for dep in rt.in_namespace(DEPLOYMENTS, ISTIO_NAMESPACE):
        labels = labels_of(dep)
        if labels.get("app") != "istiod" or not deployment_ready(dep):
            continue
        version = deployment_version(dep)
        if version:
            out[str(labels.get(LABEL_REV) or DEFAULT_REVISION)] = version
    return out


def selected_tag(rt: Runtime, gateway: Obj) -> str | None:
    """``IsMine``'s selected tag; None when the Gateway's namespace is unknown."""
    labels = labels_of(gateway)
    if LABEL_REV in labels:
        return labels[LABEL_REV]
    ns = rt.store.try_get(NAMESPACES, "", gateway["metadata"]["namespace"])
    if ns is None:
        return None
    return labels_of(ns).get(LABEL_REV, "")


def tags_of(rt: Runtime, revision: str) -> set[str]:
    """``GetMyTags``: the revision, its tag webhooks' and tag Services' tags."""
    tags = {revision}
    for cfg in rt.store.list(WEBHOOKS, copy_objects=False):
        labels = labels_of(cfg)
        if LABEL_TAG in labels and labels.get(LABEL_REV) == revision:
            tags.add(labels[LABEL_TAG])
    for svc in rt.store.list(SERVICES, ISTIO_NAMESPACE, copy_objects=False):
        labels = labels_of(svc)
        if LABEL_TAG in labels and labels.get(LABEL_REV) == revision:
            tags.add(labels[LABEL_TAG])
    return tags


def is_mine(rt: Runtime, revision: str, selected: str | None) -> bool:
    if selected is None:
        return True
    tags = tags_of(rt, revision)
    other_default = "default" not in tags and (
        rt.store.try_get(WEBHOOKS, "", tag_webhook_name("default")) is not None
    )
    validator = rt.store.try_get(VALIDATORS, "", DEFAULT_VALIDATOR)
    we_are_default = validator is not None and labels_of(validator).get(LABEL_REV) == revision
    return selected in tags or (
        selected == "" and ("default" in tags or (we_are_default and not other_default))
    )


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("-", 1)[0].split("."):
        parts.append(int(p) if p.isdigit() else 0)
    return tuple(parts)


class GatewayDeploymentController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- triggers ----------------------------------------------------------------------------

    def on_change(self, ev: WatchEvent) -> None:
        key = ev.rt.key
        m = ev.obj.get("metadata") or {}
        ns = m.get("namespace", "")
        if key == NAMESPACES.key:
            self._mark_all(m.get("name"))
        elif key in (WEBHOOKS.key, VALIDATORS.key) or (
            key in (SERVICES.key, DEPLOYMENTS.key) and ns == ISTIO_NAMESPACE
        ):
            self._mark_all(None)
        elif key == DEPLOYMENTS.key:
            for ref in m.get("ownerReferences") or []:
                if ref.get("kind") == "Gateway" and str(ref.get("apiVersion", "")).startswith(
                    GROUP
                ):
                    self.rt.mark(GATEWAYS.key, ns, str(ref.get("name")))
        elif key == CRDS.key and (ev.obj.get("spec") or {}).get("group") == GROUP:
            self.rt.after(0, self.ensure_classes)

    def _mark_all(self, namespace: str | None) -> None:
        for gw_ns, name in list(self.rt.cache[GATEWAYS.key]):
            if namespace is None or gw_ns == namespace:
                self.rt.mark(GATEWAYS.key, gw_ns, name)

    def _type(self, kind: str) -> ResourceType | None:
        return by_kind(kind, f"{GROUP}/v1", self.rt.store.custom_types)

    def ensure_classes(self) -> None:
        """istiod's GatewayClass controller creates the built-in classes once the CRD exists."""
        rt = self._type("GatewayClass")
        if rt is None:
            return
        for cls in render_gateway_classes():
            with contextlib.suppress(AlreadyExists):
                self.rt.store.create(rt, cls)

    # -- reconcile ---------------------------------------------------------------------------

    def class_info(self, gateway: Obj) -> ClassInfo | None:
        cls = str((gateway.get("spec") or {}).get("gatewayClassName", ""))
        controller = BUILTIN_CLASSES.get(cls)
        gc_rt = self._type("GatewayClass")
        gc = self.rt.store.try_get(gc_rt, "", cls) if gc_rt is not None else None
        if gc is not None:
            controller = (gc.get("spec") or {}).get("controllerName")
        return CLASS_INFOS.get(str(controller)) if controller else None

    def owner(self, gateway: Obj, info: ClassInfo) -> tuple[str, str] | None:
        """(revision, version) of the istiod that renders ``gateway``; None when none does."""
        istiods = running_istiods(self.rt)
        selected = selected_tag(self.rt, gateway)
        claims = {r: v for r, v in istiods.items() if is_mine(self.rt, r, selected)}
        if not claims:
            return None
        if len(claims) > 1:
            default_tag = self.rt.store.try_get(WEBHOOKS, "", tag_webhook_name("default"))
            tagged = labels_of(default_tag).get(LABEL_REV) if default_tag else None
            if tagged in claims:
                return str(tagged), claims[str(tagged)]
            dep = self.rt.get(
                DEPLOYMENTS, gateway["metadata"]["namespace"], deployment_name(gateway, info)
            )
            if dep is not None:
                current = (
                    (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {})
                    .get("annotations", {})
                    .get(LABEL_REV)
                )
                if current in claims:
                    return str(current), claims[str(current)]
        rev = max(claims, key=lambda r: (_version_key(claims[r]), r))
        return rev, claims[rev]

    def reconcile(self, ns: str, name: str) -> None:
        gw = self.rt.get(GATEWAYS, ns, name)
        if gw is None:
            return
        info = self.class_info(gw)
        if info is None:
            return
        addresses = (gw.get("spec") or {}).get("addresses") or []
        if any(a.get("type") == "Hostname" for a in addresses):
            return  # IsManaged: an address names an existing deployment
        owner = self.owner(gw, info)
        if owner is None:
            return
        revision, version = owner
        annotations = gw["metadata"].get("annotations") or {}
        if annotations.get(ANNOTATION_CONTROLLER_VERSION) != CONTROLLER_VERSION:
            current = annotations.get(ANNOTATION_CONTROLLER_VERSION)
            if current is None or (current.isdigit() and int(current) < int(CONTROLLER_VERSION)):

                def stamp(o: Obj) -> None:
                    o["metadata"].setdefault("annotations", {})[ANNOTATION_CONTROLLER_VERSION] = (
                        CONTROLLER_VERSION
                    )

                gw = self.rt.store.mutate(GATEWAYS, ns, name, stamp)
            else:
                return  # a newer controller owns it (ManagedGatewayControllerVersion)
        for obj in render_gateway(gw, info, revision, version):
            obj["metadata"].setdefault("labels", {})[LABEL_MANAGED] = info.controller_label
            self._apply(obj)
        self._sync_status(gw, info)

    def _apply(self, obj: Obj) -> None:
        rt = by_kind(obj["kind"], obj["apiVersion"], self.rt.store.custom_types)
        assert rt is not None
        m = obj["metadata"]
        existing = self.rt.store.try_get(rt, m["namespace"], m["name"])
        if existing is None:
            with contextlib.suppress(AlreadyExists):
                self.rt.store.create(rt, obj)
            return
        if LABEL_MANAGED not in labels_of(existing):
            return  # canManage: never take over an object we did not create
        new = clone(existing)
        # Server-side apply by one field manager: the labels and annotations it applies are
        # the ones the object ends up with (what it no longer applies is removed).
        for key in ("labels", "annotations", "ownerReferences"):
            if key in m:
                new["metadata"][key] = clone(m[key])
            else:
                new["metadata"].pop(key, None)
        if "spec" in obj:
            spec = new.setdefault("spec", {})
            for k, v in obj["spec"].items():
                spec[k] = v
        if new != existing:
            new["metadata"].pop("resourceVersion", None)
            with contextlib.suppress(NotFound):
                self.rt.store.update(rt, new)

    def _sync_status(self, gw: Obj, info: ClassInfo) -> None:
        m = gw["metadata"]
        name = deployment_name(gw, info)
        dep = self.rt.store.try_get(DEPLOYMENTS, m["namespace"], name)
        programmed = deployment_ready(dep)
        old = gw.get("status") or {}
        prev = {c.get("type"): c for c in old.get("conditions") or []}
        gen = m.get("generation", 1)

        def cond(ctype: str, ok: bool, reason: str, message: str) -> Obj:
            status = "True" if ok else "False"
            before = prev.get(ctype) or {}
            same = before.get("status") == status and before.get("observedGeneration") == gen
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": gen,
                "lastTransitionTime": before.get("lastTransitionTime") if same else now_iso(),
            }

        status: Obj = {
            "conditions": [
                cond("Accepted", True, "Accepted", "Resource accepted"),
                cond(
                    "Programmed",
                    programmed,
                    "Programmed" if programmed else "NoResources",
                    "Resource programmed, assigned to service(s) "
                    f"{name}.{m['namespace']}.svc.cluster.local"
                    if programmed
                    else "Deployment has no ready replicas",
                ),
            ],
            "addresses": [
                {"type": "Hostname", "value": f"{name}.{m['namespace']}.svc.cluster.local"}
            ],
        }
        if old.get("listeners"):
            status["listeners"] = old["listeners"]
        if status != old:
            with contextlib.suppress(NotFound):
                self.rt.store.set_status(GATEWAYS, m["namespace"], m["name"], status)
