"""``Controllers``: the sandbox's kube-controller-manager, scheduler, kubelet and injector."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers import defaults
from istio_sandbox.controllers.ambient import AmbientEnrollment
from istio_sandbox.controllers.clusterroles import ClusterRoleAggregation
from istio_sandbox.controllers.daemonsets import DaemonSetController
from istio_sandbox.controllers.deployments import DeploymentController
from istio_sandbox.controllers.gateways import GatewayDeploymentController
from istio_sandbox.controllers.injector import SERVICES, SidecarInjector
from istio_sandbox.controllers.jobs import JobController
from istio_sandbox.controllers.label_revert import LabelReverter
from istio_sandbox.controllers.objects import (
    DAEMONSETS,
    DEPLOYMENTS,
    GATEWAYS,
    JOBS,
    PODS,
    REPLICASETS,
    ROLLOUTS,
    STATEFULSETS,
    WEBHOOKS,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.replicasets import ReplicaSetController
from istio_sandbox.controllers.rollouts import RolloutController
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.controllers.sail import SailOperator
from istio_sandbox.controllers.statefulsets import StatefulSetController
from istio_sandbox.controllers.validation import ValidatingAdmission, ValidationWebhookController
from istio_sandbox.faults import RolloutFault
from istio_sandbox.istio.names import ISTIO_NAMESPACE
from istio_sandbox.store import WatchEvent

log = logging.getLogger(__name__)

BATCH = 500
"""Reconciles per slice before yielding, so the API server on the same loop stays responsive."""
RESYNC_S = 300.0
"""Full resync of workload controllers, a safety net like an informer's resync period."""


class Controllers:
    """Runs every simulated controller of one cluster on the current asyncio loop.

    Example:
        >>> controllers = Controllers(cluster)
        >>> await controllers.start()   # objects created from now on come alive
        >>> await controllers.stop()
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.runtime = Runtime(cluster)
        rt = self.runtime
        self.pods = PodLifecycle(rt)
        self.replicasets = ReplicaSetController(rt, self.pods)
        self.deployments = DeploymentController(rt)
        self.statefulsets = StatefulSetController(rt, self.pods)
        self.daemonsets = DaemonSetController(rt, self.pods)
        self.jobs = JobController(rt, self.pods)
        self.rollouts = RolloutController(rt, self.pods)
        self.gateways = GatewayDeploymentController(rt)
        self.ambient = AmbientEnrollment(rt)
        self.label_reverter = LabelReverter(rt)
        self.injector = SidecarInjector(
            cluster, rt.events, pods_in=lambda ns: rt.in_namespace(PODS, ns)
        )
        self.validation = ValidatingAdmission(cluster, lambda ns: rt.in_namespace(PODS, ns))
        self.validation_webhooks = ValidationWebhookController(rt)
        self.cluster_roles = ClusterRoleAggregation(cluster.store)
        self.sail = SailOperator(cluster.store, schedule=rt.after)
        self._reconcilers: dict[str, Callable[[str, str], None]] = {
            PODS.key: self.pods.reconcile,
            REPLICASETS.key: self.replicasets.reconcile,
            DEPLOYMENTS.key: self.deployments.reconcile,
            STATEFULSETS.key: self.statefulsets.reconcile,
            DAEMONSETS.key: self.daemonsets.reconcile,
            JOBS.key: self.jobs.reconcile,
            ROLLOUTS.key: self.rollouts.reconcile,
            GATEWAYS.key: self.gateways.reconcile,
        }
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._hooked = False
        self._stopping = False
        self._rollout_faults: list[RolloutFault] = []
        self._last_resync = 0.0

    async def start(self) -> None:
        """Hook into the store (admission + notifications) and start the reconcile loop."""
        if self._task is not None:
            return
        store = self.cluster.store
        if not self._hooked:
            self._hooked = True
            defaults.register(store)
            store.add_admission(PODS.key, self.injector.admit)
            store.add_validation(self.validation)
            store.add_validation(self.sail.validate)
            self.runtime.change_hooks.append(self.validation_webhooks.on_change)
            store.add_listener(self.runtime.on_change)
            store.add_after_write(self.cluster_roles.on_change)
            self.cluster_roles.sync_all()
            self.runtime.change_hooks.append(self._on_istio_change)
            self.runtime.change_hooks.append(self.gateways.on_change)
            self.runtime.change_hooks.append(self.ambient.on_change)
            self.runtime.change_hooks.append(self.label_reverter.on_change)
            self.runtime.change_hooks.append(self.sail.on_change)
            self.runtime.after(0, self.gateways.ensure_classes)
            self.runtime.prime()
            self.ambient.prime()
            self.label_reverter.prime()
            self.sail.prime()
            self.runtime.after(0, self.validation_webhooks.reconcile)
        self._wake = asyncio.Event()
        wake = self._wake
        self.runtime.wake = wake.set
        self._rollout_faults = list(self.cluster.faults.rollouts)
        self._last_resync = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="sandbox-controllers")

    async def stop(self) -> None:
        """Stop reconciling; objects keep their state."""
        task, self._task = self._task, None
        self.runtime.wake = lambda: None
        if task is None:
            return
        # A flag, not only cancel(): asyncio.wait_for on 3.11 can swallow a cancellation that
        # races with the wake-up it waits for.
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._stopping = False

    def run_once(self) -> int:
        """Fire due timers and reconcile up to :data:`BATCH` dirty objects; returns work done."""
        rt = self.runtime
        done = 0
        for fn in rt.due_timers(BATCH):
            self._guard(fn)
            done += 1
        while rt.dirty and done < BATCH:
            rt_key, ns, name = rt.pop_dirty()
            reconcile = self._reconcilers.get(rt_key)
            if reconcile is not None:
                self._guard(functools.partial(reconcile, ns, name))
            done += 1
        return done

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._watch_faults()
            self.run_once()
            nxt = self.runtime.next_due()
            if self.runtime.dirty or (nxt is not None and nxt <= time.monotonic()):
                await asyncio.sleep(0)
                continue
            period = self.cluster.timings.controller_period_s
            timeout = period if nxt is None else min(period, max(nxt - time.monotonic(), 0.0))
            self._wake.clear()
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            else:
                await asyncio.sleep(0)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            # One broken object must not stop the cluster; the next change retries it.
            log.exception("sandbox controller failed")

    def _watch_faults(self) -> None:
        """Re-examine workloads of namespaces whose rollout faults changed (live toggles),
        and everything on a slow resync period."""
        faults = self.cluster.faults.rollouts
        now = time.monotonic()
        if now - self._last_resync >= RESYNC_S:
            self._last_resync = now
            self._mark_workloads(None)
        if faults != self._rollout_faults:
            touched = {f.namespace for f in [*faults, *self._rollout_faults]}
            self._rollout_faults = list(faults)
            self._mark_workloads(touched)

    def _mark_workloads(self, namespaces: set[str] | None) -> None:
        for rt in (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS, JOBS, ROLLOUTS):
            for ns, name in list(self.runtime.cache[rt.key]):
                if namespaces is None or ns in namespaces:
                    self.runtime.mark(rt.key, ns, name)

    def _on_istio_change(self, ev: WatchEvent) -> None:
        """Webhook, Service or istiod changes may unblock pod creations the injector refused."""
        ns = ev.obj.get("metadata", {}).get("namespace")
        if ev.rt.key in (WEBHOOKS.key, SERVICES.key) or (
            ev.rt.key in (DEPLOYMENTS.key, PODS.key)
            and ns == ISTIO_NAMESPACE
            and self.replicasets.failing
        ):
            for rs_ns, rs_name in list(self.replicasets.failing):
                self.runtime.mark(REPLICASETS.key, rs_ns, rs_name)
