"""Validating admission as the API server runs it, and istiod's validation webhook controller.

Admission (k8s ``staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/validating/
dispatcher.go``): every create and update is sent to every ValidatingWebhookConfiguration
webhook whose ``rules`` (apiGroups, apiVersions, resources, operations, scope) and
``namespaceSelector`` / ``objectSelector`` match. A call goes to the webhook Service's ready
endpoints; none: ``failurePolicy: Fail`` refuses the write with the API server's message,
``Ignore`` skips the webhook. istiod accepts what it is sent (the sandbox does not validate
Istio's schemas). Webhook configurations themselves are never sent to webhooks.

istiod's webhook controller (``pkg/webhooks/validation/controller/controller.go``) watches the
ValidatingWebhookConfigurations labelled ``istio.io/rev=<its revision>`` (its own
``istio-validator[-<rev>]-istio-system`` and, for the default revision, the base chart's
``istiod-default-validator``) and, once it serves (``readyForFailClose``), patches their
webhooks to ``failurePolicy: Fail``.
"""

from __future__ import annotations

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.injector import (
    PodsIn,
    _resolve,
    _selected,
    istiod_identity,
    namespace_labels,
    ready_endpoints,
    webhook_unavailable,
)
from istio_sandbox.controllers.objects import PODS
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.istio.names import ISTIO_NAMESPACE, LABEL_REV
from istio_sandbox.resources import BY_KEY, ResourceType
from istio_sandbox.store import Obj, WatchEvent

VALIDATING = BY_KEY["admissionregistration.k8s.io/validatingwebhookconfigurations"]
MUTATING = BY_KEY["admissionregistration.k8s.io/mutatingwebhookconfigurations"]
SERVICES = BY_KEY["/services"]
_NEVER_SENT = frozenset({VALIDATING.key, MUTATING.key})


def _rule_matches(rule: Obj, rt: ResourceType, operation: str) -> bool:
    def has(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in (values or []) or value in (values or []))

    scope = rule.get("scope") or "*"
    if scope == "Namespaced" and not rt.namespaced:
        return False
    if scope == "Cluster" and rt.namespaced:
        return False
    return (
        has(rule.get("operations"), operation)
        and has(rule.get("apiGroups"), rt.group)
        and has(rule.get("apiVersions"), rt.version)
        and has(rule.get("resources"), rt.plural)
    )


class ValidatingAdmission:
    """``store.add_validation(ValidatingAdmission(cluster, pods_in))``."""

    def __init__(self, cluster: Cluster, pods_in: PodsIn) -> None:
        self._cluster = cluster
        self._pods_in = pods_in

    def __call__(self, rt: ResourceType, operation: str, obj: Obj, old: Obj | None) -> None:
        if rt.key in _NEVER_SENT:
            return
        configs = self._cluster.store.list(VALIDATING, copy_objects=False)
        if not configs:
            return
        m = obj.get("metadata") or {}
        labels = dict(m.get("labels") or {})
        old_labels = dict(((old or {}).get("metadata") or {}).get("labels") or {})
        ns_labels: dict[str, str] | None = None
        for cfg in configs:
            for wh in cfg.get("webhooks") or []:
                if not any(_rule_matches(r, rt, operation) for r in wh.get("rules") or []):
                    continue
                if rt.namespaced:
                    if ns_labels is None:
                        ns_labels = namespace_labels(self._cluster, str(m.get("namespace", "")))
                    if not _selected(wh.get("namespaceSelector"), ns_labels):
                        continue
                elif rt.plural == "namespaces" and not _selected(
                    wh.get("namespaceSelector"), labels
                ):
                    continue
                # An update matches when either the new or the old object's labels match.
                if not _selected(wh.get("objectSelector"), labels) and not (
                    old is not None and _selected(wh.get("objectSelector"), old_labels)
                ):
                    continue
                r = _resolve(self._cluster, cfg, wh, self._pods_in)
                if r.error and r.failure_policy != "Ignore":
                    raise webhook_unavailable(r)


class ValidationWebhookController:
    """Each serving istiod flips the validators labelled with its revision to ``Fail``."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._scheduled = False

    def on_change(self, ev: WatchEvent) -> None:
        ns = (ev.obj.get("metadata") or {}).get("namespace")
        relevant = ev.rt.key == VALIDATING.key or (
            ev.rt.key in (PODS.key, SERVICES.key) and ns == ISTIO_NAMESPACE
        )
        if relevant and not self._scheduled:
            self._scheduled = True
            # Never write from inside a store notification.
            self._rt.after(0, self.reconcile)

    def reconcile(self) -> None:
        self._scheduled = False
        store = self._rt.store
        serving: set[str] = set()
        for pod in ready_endpoints(
            self._rt.cluster,
            {"metadata": {"namespace": ISTIO_NAMESPACE}, "spec": {"selector": {"app": "istiod"}}},
            lambda n: self._rt.in_namespace(PODS, n),
        ):
            ident = istiod_identity(pod)
            if ident is not None:
                serving.add(ident[0])
        for cfg in store.list(VALIDATING, copy_objects=False):
            rev = (cfg["metadata"].get("labels") or {}).get(LABEL_REV)
            if rev not in serving:
                continue
            if all(wh.get("failurePolicy") == "Fail" for wh in cfg.get("webhooks") or []):
                continue

            def fail_closed(o: Obj) -> None:
                for wh in o.get("webhooks") or []:
                    wh["failurePolicy"] = "Fail"

            store.mutate(VALIDATING, "", cfg["metadata"]["name"], fail_closed)
