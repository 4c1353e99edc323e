"""Deployment controller: ReplicaSet per pod template, rolling and Recreate strategies, and the
status fields ``kubectl rollout status`` reads (mirrors kube-controller-manager's logic)."""

from __future__ import annotations

from istio_sandbox.controllers.events import DEPLOYMENT_CONTROLLER
from istio_sandbox.controllers.objects import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    annotations_of,
    condition,
    drop_zeros,
    int_or_percent,
    iso_age_s,
    labels_of,
    owner_reference,
    pod_phase,
    remove_condition,
    set_condition,
    template_hash,
)
from istio_sandbox.controllers.replicasets import REVISION_ANNOTATION
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import AlreadyExists, Obj, clone

HASH_LABEL = "pod-template-hash"
DEFAULT_PROGRESS_DEADLINE_S = 600
DEFAULT_HISTORY_LIMIT = 10


def _spec_replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0) or 0)


def _status(rs: Obj, key: str) -> int:
    return int((rs.get("status") or {}).get(key, 0) or 0)


def _revision(rs: Obj) -> int:
    try:
        return int(annotations_of(rs).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


class DeploymentController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._deadline_due: dict[tuple[str, str], float] = {}

    def reconcile(self, ns: str, name: str) -> None:
        d = self.rt.get(DEPLOYMENTS, ns, name)
        if d is None:
            self._deadline_due.pop((ns, name), None)
            return
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        template = spec.get("template") or {}
        hash_ = template_hash(template)
        rses = self.rt.owned(d, REPLICASETS)
        new = next((r for r in rses if labels_of(r).get(HASH_LABEL) == hash_), None)
        strategy = spec.get("strategy") or {}
        recreate = strategy.get("type") == "Recreate"
        ru = strategy.get("rollingUpdate") or {}
        surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        if recreate:
            surge, unavailable = 0, replicas
        created = False
        if not spec.get("paused"):
            if new is None:
                new = self._create_rs(d, template, hash_, rses, replicas, surge, recreate)
                created = new is not None
            elif _revision(new) < max((_revision(r) for r in rses), default=0):
                # Rolling back to an earlier template re-uses its ReplicaSet as the newest revision.
                rev = str(max(_revision(r) for r in rses) + 1)
                self.rt.store.mutate(
                    REPLICASETS,
                    ns,
                    new["metadata"]["name"],
                    lambda o: (
                        o["metadata"]
                        .setdefault("annotations", {})
                        .update({REVISION_ANNOTATION: rev})
                    ),
                )
            if new is not None:
                olds = [
                    r
                    for r in self.rt.owned(d, REPLICASETS)
                    if r["metadata"]["uid"] != new["metadata"]["uid"]
                ]
                if recreate:
                    self._recreate(d, new, olds, replicas)
                else:
                    self._roll(d, new, olds, replicas, surge, unavailable)
                self._cleanup(d, new)
        self._sync_status(d, replicas, unavailable, hash_, created)

    # -- ReplicaSets -----------------------------------------------------------------------

    def _create_rs(
        self,
        d: Obj,
        template: Obj,
        hash_: str,
        rses: list[Obj],
        replicas: int,
        surge: int,
        recreate: bool,
    ) -> Obj | None:
        m = d["metadata"]
        current = sum(_spec_replicas(r) for r in rses)
        if recreate:
            initial = 0 if current or any(self._has_pods(r) for r in rses) else replicas
        else:
            initial = min(replicas, max(0, replicas + surge - current)) if rses else replicas
        rs_template = clone(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = clone((d.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        rs_name = f"{m['name']}-{hash_}"
        rs: Obj = {
            "metadata": {
                "name": rs_name,
                "namespace": m["namespace"],
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {
                    REVISION_ANNOTATION: str(max((_revision(r) for r in rses), default=0) + 1),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                },
                "ownerReferences": [owner_reference(d, DEPLOYMENTS)],
            },
            "spec": {
                "replicas": initial,
                "minReadySeconds": int((d.get("spec") or {}).get("minReadySeconds", 0) or 0),
                "selector": selector,
                "template": rs_template,
            },
        }
        try:
            self.rt.store.create(REPLICASETS, rs)
        except AlreadyExists:
            return None
        if initial:
            self._scaled_event(d, rs_name, 0, initial)
        return self.rt.get(REPLICASETS, m["namespace"], rs_name)

    def _has_pods(self, rs: Obj) -> bool:
        """Any pod still running, terminating ones included (Recreate waits for them)."""
        return any(pod_phase(p) not in ("Succeeded", "Failed") for p in self.rt.owned(rs, PODS))

    def _scale(self, d: Obj, rs: Obj, to: int) -> None:
        before = _spec_replicas(rs)
        if before == to:
            return

        def fn(o: Obj) -> None:
            o["spec"]["replicas"] = to

        m = rs["metadata"]
        self.rt.store.mutate(REPLICASETS, m["namespace"], m["name"], fn)
        self._scaled_event(d, m["name"], before, to)

    def _scaled_event(self, d: Obj, rs_name: str, before: int, to: int) -> None:
        way = "up" if to > before else "down"
        self.rt.events.record(
            d,
            "ScalingReplicaSet",
            f"Scaled {way} replica set {rs_name} from {before} to {to}",
            component=DEPLOYMENT_CONTROLLER,
        )

    def _recreate(self, d: Obj, new: Obj, olds: list[Obj], replicas: int) -> None:
        for rs in olds:
            self._scale(d, rs, 0)
        if not any(self._has_pods(rs) for rs in olds):
            self._scale(d, new, replicas)

    def _roll(
        self, d: Obj, new: Obj, olds: list[Obj], replicas: int, surge: int, unavailable: int
    ) -> None:
        sizes = {r["metadata"]["name"]: _spec_replicas(r) for r in [new, *olds]}
        new_name = new["metadata"]["name"]
        # Scale the new ReplicaSet up within maxSurge.
        if sizes[new_name] > replicas:
            sizes[new_name] = replicas
        elif sizes[new_name] < replicas:
            room = replicas + surge - sum(sizes.values())
            if room > 0:
                sizes[new_name] = min(replicas, sizes[new_name] + room)
        # Scale old ReplicaSets down within maxUnavailable: unhealthy pods first, then healthy.
        min_available = replicas - unavailable
        new_unavailable = sizes[new_name] - _status(new, "availableReplicas")
        budget = sum(sizes.values()) - min_available - new_unavailable
        by_age = sorted(olds, key=lambda r: str(r["metadata"].get("creationTimestamp", "")))
        for rs in by_age:
            if budget <= 0:
                break
            n = rs["metadata"]["name"]
            unhealthy = sizes[n] - _status(rs, "availableReplicas")
            cut = min(max(unhealthy, 0), budget, sizes[n])
            sizes[n] -= cut
            budget -= cut
        available = sum(_status(r, "availableReplicas") for r in [new, *olds])
        healthy_cut = min(available - min_available, budget) if budget > 0 else 0
        for rs in by_age:
            if healthy_cut <= 0:
                break
            n = rs["metadata"]["name"]
            cut = min(sizes[n], healthy_cut)
            sizes[n] -= cut
            healthy_cut -= cut
        for rs in [new, *olds]:
            self._scale(d, rs, sizes[rs["metadata"]["name"]])

    def _cleanup(self, d: Obj, new: Obj) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
        idle = [
            r
            for r in self.rt.owned(d, REPLICASETS)
            if r["metadata"]["uid"] != new["metadata"]["uid"]
            and not _spec_replicas(r)
            and not _status(r, "replicas")
        ]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            self.rt.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    # -- status ----------------------------------------------------------------------------

    def _sync_status(
        self, d: Obj, replicas: int, max_unavailable: int, hash_: str, created: bool
    ) -> None:
        m = d["metadata"]
        ns, name = m["namespace"], m["name"]
        spec = d.get("spec") or {}
        rses = self.rt.owned(d, REPLICASETS)
        new = next((r for r in rses if labels_of(r).get(HASH_LABEL) == hash_), None)
        old = d.get("status") or {}
        available = sum(_status(r, "availableReplicas") for r in rses)
        status: Obj = {
            "observedGeneration": m.get("generation", 1),
            "replicas": sum(_status(r, "replicas") for r in rses),
            "updatedReplicas": _status(new, "replicas") if new else 0,
            "readyReplicas": sum(_status(r, "readyReplicas") for r in rses),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_spec_replicas(r) for r in rses) - available, 0),
            "conditions": [dict(c) for c in old.get("conditions") or []],
        }
        if available >= replicas - max_unavailable:
            set_condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = new["metadata"]["name"] if new else ""
        subject = f'ReplicaSet "{rs_name}"' if new else f'Deployment "{name}"'
        if created:
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{rs_name}"',
                touch=True,
            )
        complete = (
            status["updatedReplicas"] == replicas
            and available == replicas
            and status["replicas"] == replicas
        )
        deadline = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
        if spec.get("paused"):
            set_condition(
                status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif complete:
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f"{subject} has successfully progressed.",
            )
        elif _progressed(old, status):
            set_condition(
                status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f"{subject} is progressing.",
                touch=True,
            )
        elif deadline is not None and self._timed_out(status, float(deadline)):
            set_condition(
                status,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f"{subject} has timed out progressing.",
            )
        if not complete and not spec.get("paused") and deadline is not None:
            self._arm_deadline(ns, name, status, float(deadline))
        failure = next(
            (c for r in rses if (c := condition(r, "ReplicaFailure")) and c["status"] == "True"),
            None,
        )
        if failure is not None:
            set_condition(
                status, "ReplicaFailure", "True", "FailedCreate", str(failure.get("message", ""))
            )
        else:
            remove_condition(status, "ReplicaFailure")
        drop_zeros(
            status,
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
        if status != old:
            self.rt.store.set_status(DEPLOYMENTS, ns, name, status)

    @staticmethod
    def _timed_out(status: Obj, deadline_s: float) -> bool:
        cond = condition({"status": status}, "Progressing")
        if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        return iso_age_s(cond.get("lastUpdateTime")) > deadline_s

    def _arm_deadline(self, ns: str, name: str, status: Obj, deadline_s: float) -> None:
        """Wake the Deployment when its progress deadline passes, so the timeout is reported."""
        cond = condition({"status": status}, "Progressing")
        if cond is None or cond.get("reason") == "ProgressDeadlineExceeded":
            return
        remaining = deadline_s - iso_age_s(cond.get("lastUpdateTime")) + 1.0
        key = (ns, name)
        stamp = str(cond.get("lastUpdateTime"))
        due = hash((stamp, deadline_s))
        if self._deadline_due.get(key) == due:
            return
        self._deadline_due[key] = due
        self.rt.after(max(remaining, 0.0), lambda: self.rt.mark(DEPLOYMENTS.key, ns, name))


def _progressed(old: Obj, new: Obj) -> bool:
    """kube-controller-manager's DeploymentProgressing: any step forward since last status."""

    def g(s: Obj, k: str) -> int:
        return int(s.get(k, 0) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )
