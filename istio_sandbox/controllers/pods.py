"""Pod lifecycle, as the scheduler and kubelet drive it: Pending → Running → Ready, and back.

Transitions are timers (``cluster.timings``), never polling: a pod costs work only when
something happens to it. Rollout faults are read at every transition, so toggling one at run
time affects pods still starting and lets stuck pods recover.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Callable

from istio_sandbox.cluster import Timings
from istio_sandbox.controllers.events import SCHEDULER
from istio_sandbox.controllers.istiod import is_istiod_pod
from istio_sandbox.controllers.objects import (
    PODS,
    controller_of,
    is_ready,
    is_terminating,
    pod_phase,
)
from istio_sandbox.controllers.rollout_faults import pod_fault
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.faults import RolloutFault
from istio_sandbox.istio.names import PROXY_CONTAINER
from istio_sandbox.store import NotFound, Obj, StoreError, WatchEvent, now_iso
from istio_sandbox.system import HOST_IPS, NODES

READINESS_FAILURE = "Readiness probe failed: HTTP probe failed with statuscode: 503"


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _container_status(pod: Obj, c: Obj, *, ready: bool, state: Obj, restarts: int = 0) -> Obj:
    uid = pod["metadata"].get("uid", "")
    image = str(c.get("image", ""))
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return {
        "name": c.get("name"),
        "image": image,
        "imageID": f"{repo}@sha256:{_digest(image)}",
        "containerID": f"containerd://{_digest(uid, str(c.get('name')), str(restarts))}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
        "lastState": {},
    }


def _pod_conditions(status: Obj, *, ready: bool, reason: str = "") -> None:
    now = now_iso()
    old = {c["type"]: c for c in status.get("conditions") or []}

    def cond(ctype: str, value: bool, why: str = "") -> Obj:
        s = "True" if value else "False"
        prev = old.get(ctype)
        out: Obj = {
            "type": ctype,
            "status": s,
            "lastProbeTime": None,
            "lastTransitionTime": prev["lastTransitionTime"]
            if prev and prev.get("status") == s
            else now,
        }
        if why and not value:
            out["reason"] = why
        return out

    status["conditions"] = [
        cond("PodReadyToStartContainers", True),
        cond("Initialized", True),
        cond("Ready", ready, reason or "ContainersNotReady"),
        cond("ContainersReady", ready, reason or "ContainersNotReady"),
        cond("PodScheduled", True),
    ]


class PodLifecycle:
    """Schedules pods on the simulated nodes and walks them through their phases."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._tracked: set[str] = set()
        self._terminating: set[str] = set()
        self._ips = itertools.count(2)
        self._nodes = itertools.cycle(NODES)
        self._restarts: dict[str, int] = {}
        rt.change_hooks.append(self._forget)

    @property
    def timings(self) -> Timings:
        return self.rt.cluster.timings

    def create(self, owner: Obj, pod: Obj, component: str) -> StoreError | None:
        """Create a pod for a workload controller, already bound to a node.

        Returns:
            None on success; the admission error (e.g. the injection webhook refusing) after
            recording the ``FailedCreate`` Warning on ``owner``.
        """
        spec = pod.setdefault("spec", {})
        spec["nodeName"] = spec.get("nodeName") or next(self._nodes)
        pod["status"] = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_iso(),
                }
            ],
            "qosClass": "BestEffort",
        }
        try:
            created = self.rt.store.create(PODS, pod, copy_result=False)
        except StoreError as err:
            self.rt.events.record(
                owner,
                "FailedCreate",
                f"Error creating: {err.message}",
                type_="Warning",
                component=component,
            )
            return err
        m = created["metadata"]
        self.rt.events.record(
            owner, "SuccessfulCreate", f"Created pod: {m['name']}", component=component
        )
        self.rt.events.record(
            created,
            "Scheduled",
            f"Successfully assigned {m['namespace']}/{m['name']} to {spec['nodeName']}",
            component=SCHEDULER,
        )
        return None

    def reconcile(self, ns: str, name: str) -> None:
        pod = self.rt.get(PODS, ns, name)
        if pod is None:
            return
        uid = pod["metadata"]["uid"]
        if is_terminating(pod):
            if uid not in self._terminating:
                self._terminating.add(uid)
                self.rt.after(self.timings.pod_terminate_s, self._on(ns, name, uid, self._finalize))
            return
        if uid in self._tracked:
            return
        self._tracked.add(uid)
        phase = pod_phase(pod)
        status = pod.get("status") or {}
        if not (pod.get("spec") or {}).get("nodeName") or not status.get("phase"):
            self._schedule(pod)
            self.rt.after(self.timings.pod_start_s, self._on(ns, name, uid, self._start))
        elif phase == "Pending":
            self.rt.after(self.timings.pod_start_s, self._on(ns, name, uid, self._start))
        elif phase == "Running" and not is_ready(pod):
            self.rt.after(self._ready_delay(pod), self._on(ns, name, uid, self._ready))

    def terminate(self, pod: Obj) -> None:
        """Graceful deletion: Terminating (``deletionTimestamp``) now, gone after a moment."""
        m = pod["metadata"]
        ns, name = m["namespace"], m["name"]
        if is_terminating(pod):
            return
        for c in (pod.get("spec") or {}).get("containers") or []:
            self.rt.events.record(
                pod,
                "Killing",
                f"Stopping container {c.get('name')}",
                field_path=f"spec.containers{{{c.get('name')}}}",
            )
        if self.timings.pod_terminate_s <= 0:
            self._delete(ns, name)
            return

        def mark(p: Obj) -> None:
            p["metadata"]["deletionTimestamp"] = now_iso()
            p["metadata"]["deletionGracePeriodSeconds"] = int(
                (p.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            )

        self.rt.store.mutate(PODS, ns, name, mark)

    # -- transitions -----------------------------------------------------------------------

    def _on(self, ns: str, name: str, uid: str, fn: Callable[[Obj], None]) -> Callable[[], None]:
        def run() -> None:
            pod = self.rt.get(PODS, ns, name)
            if pod is None or pod["metadata"].get("uid") != uid:
                return
            if is_terminating(pod) and fn != self._finalize:
                return
            fn(pod)

        return run

    def _schedule(self, pod: Obj) -> None:
        m = pod["metadata"]
        node = (pod.get("spec") or {}).get("nodeName") or next(self._nodes)

        def fn(p: Obj) -> None:
            p.setdefault("spec", {})["nodeName"] = node
            p["status"] = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": now_iso(),
                    }
                ],
                "qosClass": "BestEffort",
            }

        obj = self.rt.store.get(PODS, m["namespace"], m["name"])
        fn(obj)
        obj["metadata"].pop("resourceVersion", None)
        self.rt.store.update(PODS, obj)
        self.rt.store.update(PODS, obj, subresource="status")
        self.rt.events.record(
            pod,
            "Scheduled",
            f"Successfully assigned {m['namespace']}/{m['name']} to {node}",
            component=SCHEDULER,
        )

    def _ready_delay(self, pod: Obj) -> float:
        t = self.timings
        return t.istiod_ready_s if is_istiod_pod(pod) else t.pod_ready_s

    def _fault_recheck_s(self) -> float:
        return max(0.5, self.timings.pod_ready_s)

    def _start(self, pod: Obj) -> None:
        m = pod["metadata"]
        ns, name, uid = m["namespace"], m["name"], m["uid"]
        spec = pod.get("spec") or {}
        node = spec.get("nodeName") or NODES[0]
        if spec.get("hostNetwork"):
            # A hostNetwork pod shares its node's network namespace: podIP is the node's IP.
            ip = HOST_IPS.get(node, "172.18.0.2")
        else:
            n = next(self._ips)
            ip = f"10.244.{n // 250}.{n % 250 + 2}"
        started = now_iso()
        containers = spec.get("containers") or []
        fault = pod_fault(self.rt, pod)

        def fn(p: Obj) -> None:
            status = p.setdefault("status", {})
            status.update(
                phase="Running",
                hostIP=HOST_IPS.get(node, "172.18.0.2"),
                hostIPs=[{"ip": HOST_IPS.get(node, "172.18.0.2")}],
                podIP=ip,
                podIPs=[{"ip": ip}],
                startTime=started,
            )
            status["initContainerStatuses"] = [
                _container_status(
                    p,
                    c,
                    ready=True,
                    state={
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": started,
                            "finishedAt": started,
                        }
                    },
                )
                for c in spec.get("initContainers") or []
            ]
            status["containerStatuses"] = [
                _container_status(p, c, ready=False, state={"running": {"startedAt": started}})
                for c in containers
            ]
            _pod_conditions(status, ready=False)

        self.rt.edit_status(PODS, pod, fn)
        # Kubelet reports every container; the first one's story is enough here and keeps a
        # 20,000-pod scenario from spending its time writing Events.
        for c in containers[:1]:
            cname = str(c.get("name"))
            path = f"spec.containers{{{cname}}}"
            self.rt.events.record(
                pod,
                "Pulled",
                f'Container image "{c.get("image")}" already present on machine',
                field_path=path,
            )
            self.rt.events.record(pod, "Created", f"Created container {cname}", field_path=path)
            self.rt.events.record(pod, "Started", f"Started container {cname}", field_path=path)
        if _is_job_pod(pod):
            self.rt.after(self.timings.job_duration_s, self._on(ns, name, uid, self._complete))
        if fault is not None and fault.kind == "crash":
            fresh = self.rt.get(PODS, ns, name)
            if fresh is not None:
                self._crash(fresh, fault)
            return
        self.rt.after(self._ready_delay(pod), self._on(ns, name, uid, self._ready))

    def _ready(self, pod: Obj) -> None:
        m = pod["metadata"]
        ns, name, uid = m["namespace"], m["name"], m["uid"]
        if pod_phase(pod) != "Running":
            return
        fault = pod_fault(self.rt, pod)
        if fault is not None:
            if fault.kind == "crash":
                self._crash(pod, fault)
                return
            target = _faulty_container(pod, fault)
            self.rt.events.record(
                pod,
                "Unhealthy",
                READINESS_FAILURE,
                type_="Warning",
                field_path=f"spec.containers{{{target}}}",
            )
            self.rt.after(self._fault_recheck_s(), self._on(ns, name, uid, self._ready))
            return
        self._restarts.pop(uid, None)

        def fn(p: Obj) -> None:
            status = p.setdefault("status", {})
            now = now_iso()
            for cs in status.get("containerStatuses") or []:
                cs["ready"] = True
                cs["started"] = True
                if "running" not in cs.get("state", {}):
                    cs["state"] = {"running": {"startedAt": now}}
            _pod_conditions(status, ready=True)

        self.rt.edit_status(PODS, pod, fn)

    def _crash(self, pod: Obj, fault: RolloutFault) -> None:
        m = pod["metadata"]
        ns, name, uid = m["namespace"], m["name"], m["uid"]
        target = _faulty_container(pod, fault)
        restarts = self._restarts.get(uid, 0) + 1
        self._restarts[uid] = restarts
        now = now_iso()

        def fn(p: Obj) -> None:
            status = p.setdefault("status", {})
            for cs in status.get("containerStatuses") or []:
                if cs.get("name") == target:
                    cs.update(
                        ready=False,
                        started=False,
                        restartCount=restarts,
                        state={
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off restarting failed container={target} "
                                f"pod={name}_{ns}({uid})",
                            }
                        },
                        lastState={
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    )
                else:
                    cs["ready"] = False
            _pod_conditions(status, ready=False)

        self.rt.edit_status(PODS, pod, fn)
        self.rt.events.record(
            pod,
            "BackOff",
            f"Back-off restarting failed container {target} in pod {name}_{ns}({uid})",
            type_="Warning",
            field_path=f"spec.containers{{{target}}}",
        )
        self.rt.after(self._fault_recheck_s(), self._on(ns, name, uid, self._ready))

    def _complete(self, pod: Obj) -> None:
        now = now_iso()

        def fn(p: Obj) -> None:
            status = p.setdefault("status", {})
            status["phase"] = "Succeeded"
            for cs in status.get("containerStatuses") or []:
                started = (cs.get("state", {}).get("running") or {}).get("startedAt", now)
                cs.update(
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                )
            _pod_conditions(status, ready=False, reason="PodCompleted")

        self.rt.edit_status(PODS, pod, fn)

    def _finalize(self, pod: Obj) -> None:
        m = pod["metadata"]
        self._delete(m["namespace"], m["name"])

    def _delete(self, ns: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.rt.store.delete(PODS, ns, name)

    def _forget(self, ev: WatchEvent) -> None:
        if ev.type == "DELETED" and ev.rt.key == PODS.key:
            uid = ev.obj["metadata"].get("uid", "")
            self._tracked.discard(uid)
            self._terminating.discard(uid)
            self._restarts.pop(uid, None)


def _is_job_pod(pod: Obj) -> bool:
    ref = controller_of(pod)
    return bool(ref and ref.get("kind") == "Job")


def _faulty_container(pod: Obj, fault: RolloutFault) -> str:
    """A revision-scoped fault breaks the sidecar; otherwise the application container."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    if fault.revision is not None and PROXY_CONTAINER in names:
        return PROXY_CONTAINER
    return names[0] if names else PROXY_CONTAINER
