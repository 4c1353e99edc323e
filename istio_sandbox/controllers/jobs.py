"""Job controller: run pods to completion (``timings.job_duration_s``), report Complete."""

from __future__ import annotations

from istio_sandbox.controllers.events import JOB_CONTROLLER
from istio_sandbox.controllers.objects import (
    JOBS,
    PODS,
    condition,
    drop_zeros,
    is_active,
    is_ready,
    pod_from_template,
    pod_phase,
    random_suffix,
    set_condition,
)
from istio_sandbox.controllers.pods import PodLifecycle
from istio_sandbox.controllers.runtime import Runtime
from istio_sandbox.store import Obj, now_iso

RETRY_S = 1.0


class JobController:
    def __init__(self, rt: Runtime, pods: PodLifecycle) -> None:
        self.rt = rt
        self.pods = pods

    def reconcile(self, ns: str, name: str) -> None:
        job = self.rt.get(JOBS, ns, name)
        if job is None:
            return
        spec = job.get("spec") or {}
        completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        pods = self.rt.owned(job, PODS)
        succeeded = sum(1 for p in pods if pod_phase(p) == "Succeeded")
        failed = sum(1 for p in pods if pod_phase(p) == "Failed")
        active = [p for p in pods if is_active(p)]
        done = condition(job, "Complete") is not None
        if not done and not spec.get("suspend"):
            want = min(parallelism, completions - succeeded) - len(active)
            uid = job["metadata"]["uid"]
            for _ in range(max(want, 0)):
                pod = pod_from_template(
                    job,
                    JOBS,
                    spec.get("template") or {},
                    f"{name}-{random_suffix()}",
                    {
                        "batch.kubernetes.io/controller-uid": uid,
                        "batch.kubernetes.io/job-name": name,
                        "controller-uid": uid,
                        "job-name": name,
                    },
                )
                pod["spec"]["restartPolicy"] = (
                    (spec.get("template") or {}).get("spec", {}).get("restartPolicy", "Never")
                )
                if self.pods.create(job, pod, JOB_CONTROLLER) is not None:
                    self.rt.after(RETRY_S, lambda: self.rt.mark(JOBS.key, ns, name))
                    break
        self._sync_status(job, completions, succeeded, failed)

    def _sync_status(self, job: Obj, completions: int, succeeded: int, failed: int) -> None:
        m = job["metadata"]
        pods = self.rt.owned(job, PODS)
        active = [p for p in pods if is_active(p)]
        old = job.get("status") or {}
        status: Obj = {
            "startTime": old.get("startTime") or now_iso(),
            "active": len(active),
            "ready": sum(1 for p in active if is_ready(p)),
            "succeeded": succeeded,
            "failed": failed,
            "terminating": sum(
                1 for p in pods if (p.get("metadata") or {}).get("deletionTimestamp")
            ),
            "uncountedTerminatedPods": {},
        }
        if old.get("conditions"):
            status["conditions"] = [dict(c) for c in old["conditions"]]
        if old.get("completionTime"):
            status["completionTime"] = old["completionTime"]
        if succeeded >= completions and condition(job, "Complete") is None:
            status["completionTime"] = now_iso()
            set_condition(
                status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                with_update_time=False,
            )
            set_condition(
                status,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                with_update_time=False,
            )
            self.rt.events.record(job, "Completed", "Job completed", component=JOB_CONTROLLER)
        drop_zeros(status, "active", "succeeded", "failed")
        if status != old:
            self.rt.store.set_status(JOBS, m["namespace"], m["name"], status)
