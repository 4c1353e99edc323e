"""The ``labels`` faults: a GitOps controller that reverts namespace label drift.

Argo CD with ``selfHeal: true`` (or Flux) owns the namespaces' manifests: when someone changes
a namespace's labels, it re-applies the labels from Git shortly after. The sandbox keeps the
labels each namespace had while no change was pending; a change to a namespace a
``LabelRevertFault`` covers is set back to them ``delay_s`` later (changes made meanwhile are
reverted together), consuming one of the fault's ``count``. The revert is an ordinary update
(a MODIFIED watch event, a new resourceVersion), so drift is observable and repeats.
"""

from __future__ import annotations

import contextlib

from istio_sandbox.controllers.objects import NAMESPACES, labels_of
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.faults import LabelRevertFault
from istio_sandbox.store import NotFound, Obj, WatchEvent


class LabelReverter:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._settled: dict[str, dict[str, str]] = {}
        """Namespace → the labels Git would put back."""
        self._pending: set[str] = set()
        self._reverting: str | None = None
        self.reverts = 0
        """Reverts done (for tests and the stats)."""

    def prime(self) -> None:
        for ns in self.rt.store.list(NAMESPACES, copy_objects=False):
            self._settled[ns["metadata"]["name"]] = labels_of(ns)

    def _fault(self, namespace: str) -> LabelRevertFault | None:
        for fault in self.rt.cluster.faults.labels:
            if fault.namespaces and namespace not in fault.namespaces:
                continue
            if fault.count is not None and fault.count <= 0:
                continue
            return fault
        return None

    def on_change(self, ev: WatchEvent) -> None:
        if ev.rt.key != NAMESPACES.key:
            return
        name = str(ev.obj["metadata"]["name"])
        if ev.type == "DELETED":
            self._settled.pop(name, None)
            self._pending.discard(name)
            return
        labels = labels_of(ev.obj)
        if ev.type == "ADDED" or name not in self._settled or self._reverting == name:
            self._settled[name] = labels
            return
        if name in self._pending or labels == self._settled[name]:
            return
        fault = self._fault(name)
        if fault is None:
            self._settled[name] = labels
            return
        self._pending.add(name)
        self.rt.after(fault.delay_s, lambda: self._revert(name))

    def _revert(self, name: str) -> None:
        self._pending.discard(name)
        target = self._settled.get(name)
        fault = self._fault(name)
        if target is None or fault is None:
            ns = self.rt.store.try_get(NAMESPACES, "", name)
            if ns is not None:
                self._settled[name] = labels_of(ns)
            return
        if fault.count is not None:
            fault.count -= 1

        def fn(o: Obj) -> None:
            o["metadata"]["labels"] = dict(target)

        self._reverting = name
        try:
            with contextlib.suppress(NotFound):
                self.rt.store.mutate(NAMESPACES, "", name, fn)
                self.reverts += 1
                self.rt.events.record(
                    self.rt.store.get(NAMESPACES, "", name),
                    "LabelsReverted",
                    "namespace labels set back to the desired state (GitOps self-heal)",
                    type_="Warning",
                    component="gitops-self-heal",
                )
        finally:
            self._reverting = None
