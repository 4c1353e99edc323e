"""Argo Rollouts, reduced to what an Istio upgrade meets: pods owned by a controller it does
not know.

A ``Rollout`` (``argoproj.io/v1alpha1``, CRD ``rollouts.argoproj.io``) owns one ReplicaSet per
pod template, named ``<rollout>-<hash>`` and labelled ``rollouts-pod-template-hash`` (Argo's
``pkg/apis/rollouts/v1alpha1`` ``DefaultRolloutUniqueLabelKey``), with an ownerReference
``kind: Rollout, controller: true``; the ReplicaSet controller makes the pods. So a pod's owner
chain is Pod → ReplicaSet → Rollout, never a Deployment.

- A changed ``spec.template`` creates a new ReplicaSet at full size; once its pods are
  available the older ones scale to 0 (a canary without steps, simplified to one step).
- ``spec.restartAt`` (what ``kubectl argo rollouts restart`` sets): once that time has passed,
  pods created before it are deleted one at a time, each only when every pod is Ready (Argo's
  ``rollout/restart.go`` evicts within maxUnavailable), then ``status.restartedAt`` records it.
  The ReplicaSet and pod template do not change, so ``kubectl.kubernetes.io/restartedAt`` in
  the template is just another template change (a new ReplicaSet), as in Argo.
- ``status``: ``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
  ``currentPodHash``, ``stableRS``, ``observedGeneration`` (a string in Argo), ``phase``
  (``Progressing``/``Healthy``), ``restartedAt``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from istio_sandbox.controllers.objects import (
    PODS,
    REPLICASETS,
    ROLLOUTS,
    annotations_of,
    is_active,
    is_ready,
    labels_of,
    owner_reference,
    template_hash,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import AlreadyExists, Obj, clone

HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"


def render_rollout_crd() -> Obj:
    """``rollouts.argoproj.io`` as Argo Rollouts' ``manifests/crds/rollout-crd.yaml`` names it
    (schema reduced to ``x-kubernetes-preserve-unknown-fields``)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "rollouts.argoproj.io",
            "labels": {
                "app.kubernetes.io/component": "rollouts-controller",
                "app.kubernetes.io/name": "argo-rollouts",
                "app.kubernetes.io/part-of": "argo-rollouts",
            },
        },
        "spec": {
            "group": "argoproj.io",
            "names": {
                "kind": "Rollout",
                "listKind": "RolloutList",
                "plural": "rollouts",
                "shortNames": ["ro"],
                "singular": "rollout",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.HPAReplicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _replicas(obj: Obj) -> int:
    spec = obj.get("spec") or {}
    return int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)


class RolloutController:
    def __init__(self, rt: Runtime, pods: PodLifecycle) -> None:
        self.rt = rt
        self.pods = pods

    def reconcile(self, ns: str, name: str) -> None:
        ro = self.rt.get(ROLLOUTS, ns, name)
        if ro is None:
            return
        spec = ro.get("spec") or {}
        replicas = _replicas(ro)
        template = spec.get("template") or {}
        hash_ = template_hash(template)
        rses = self.rt.owned(ro, REPLICASETS)
        new = next((r for r in rses if labels_of(r).get(HASH_LABEL) == hash_), None)
        if new is None and not spec.get("paused"):
            new = self._create_rs(ro, template, hash_, rses, replicas)
        if new is None:
            return
        if int((new.get("spec") or {}).get("replicas", 0) or 0) != replicas:
            self._scale(new, replicas)
        new_available = int((new.get("status") or {}).get("availableReplicas", 0) or 0)
        olds = [r for r in rses if r["metadata"]["uid"] != new["metadata"]["uid"]]
        if new_available >= replicas:
            for rs in olds:
                self._scale(rs, 0)
        restarted = self._restart(ro, new, replicas)
        self._sync_status(ro, new, olds, replicas, hash_, restarted)

    def _create_rs(
        self, ro: Obj, template: Obj, hash_: str, rses: list[Obj], replicas: int
    ) -> Obj | None:
        m = ro["metadata"]
        rs_template = clone(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = clone((ro.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        revision = 1 + max(
            (int(annotations_of(r).get(REVISION_ANNOTATION, "0") or 0) for r in rses), default=0
        )
        rs: Obj = {
            "metadata": {
                "name": f"{m['name']}-{hash_}",
                "namespace": m["namespace"],
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {REVISION_ANNOTATION: str(revision)},
                "ownerReferences": [owner_reference(ro, ROLLOUTS)],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
        }
        try:
            self.rt.store.create(REPLICASETS, rs)
        except AlreadyExists:
            return None
        return self.rt.get(REPLICASETS, m["namespace"], rs["metadata"]["name"])

    def _scale(self, rs: Obj, to: int) -> None:
        if int((rs.get("spec") or {}).get("replicas", 0) or 0) == to:
            return

        def fn(o: Obj) -> None:
            o["spec"]["replicas"] = to

        self.rt.store.mutate(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], fn)

    def _restart(self, ro: Obj, new: Obj, replicas: int) -> str | None:
        """Delete, one at a time, pods older than ``spec.restartAt``; returns the restartAt
        value once every pod is younger (None while restarting or when none is asked)."""
        raw = (ro.get("spec") or {}).get("restartAt")
        when = _parse_time(raw)
        if when is None:
            return None
        now = datetime.now(UTC)
        if when > now:
            self.rt.after(
                (when - now).total_seconds() + 0.05,
                lambda: self.rt.mark(
                    ROLLOUTS.key, ro["metadata"]["namespace"], ro["metadata"]["name"]
                ),
            )
            return None
        pods = [p for p in self.rt.owned(new, PODS) if is_active(p)]
        old = [
            p for p in pods if (_parse_time(p["metadata"].get("creationTimestamp")) or now) < when
        ]
        if not old:
            return str(raw)
        terminating = any(not is_active(p) for p in self.rt.owned(new, PODS))
        if len(pods) >= replicas and all(is_ready(p) for p in pods) and not terminating:
            victim = min(old, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
            self.pods.terminate(victim)
        return None

    def _sync_status(
        self,
        ro: Obj,
        new: Obj,
        olds: list[Obj],
        replicas: int,
        hash_: str,
        restarted: str | None,
    ) -> None:
        def st(rs: Obj, key: str) -> int:
            return int((rs.get("status") or {}).get(key, 0) or 0)

        m = ro["metadata"]
        old_status = ro.get("status") or {}
        total = st(new, "replicas") + sum(st(r, "replicas") for r in olds)
        updated = st(new, "replicas")
        ready = st(new, "readyReplicas") + sum(st(r, "readyReplicas") for r in olds)
        available = st(new, "availableReplicas") + sum(st(r, "availableReplicas") for r in olds)
        healthy = (
            updated == replicas
            and st(new, "availableReplicas") == replicas
            and total == replicas
            and (restarted is not None or not (ro.get("spec") or {}).get("restartAt"))
        )
        stable = hash_ if healthy else old_status.get("stableRS", hash_)
        selector = ",".join(
            f"{k}={v}"
            for k, v in sorted(
                (((new.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items()
            )
        )
        status: Obj = {
            "observedGeneration": str(m.get("generation", 1)),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "HPAReplicas": total,
            "currentPodHash": hash_,
            "stableRS": stable,
            "selector": selector,
            "phase": "Healthy" if healthy else "Progressing",
        }
        if not healthy:
            status["message"] = "more replicas need to be updated"
        restarted_at = restarted or old_status.get("restartedAt")
        if restarted_at:
            status["restartedAt"] = restarted_at
        if status != old_status:
            self.rt.store.set_status(ROLLOUTS, m["namespace"], m["name"], status)
