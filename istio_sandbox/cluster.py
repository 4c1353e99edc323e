"""The state one sandbox process shares between its HTTP layer, controllers and mesh model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from istio_sandbox.faults import Faults
from istio_sandbox.store import Store
from istio_sandbox.system import bootstrap


class Timings(BaseModel):
    """How fast the simulated cluster moves. Short by default so tests and the demo are quick."""

    model_config = ConfigDict(extra="forbid")

    pod_start_s: float = Field(0.5, ge=0, description="Pending → Running.")
    pod_ready_s: float = Field(0.5, ge=0, description="Running → Ready.")
    pod_terminate_s: float = Field(0.2, ge=0, description="Terminating → gone.")
    istiod_ready_s: float = Field(2.0, ge=0, description="istiod Deployment created → Ready.")
    job_duration_s: float = Field(1.0, ge=0, description="Job pod Running → Succeeded.")
    controller_period_s: float = Field(0.1, gt=0, description="Reconcile tick.")


@dataclass
class Accounting:
    """API requests counted by (verb, resource, namespace); writes counted apart."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def record(self, verb: str, resource: str, namespace: str) -> None:
        self.requests[(verb, resource, namespace)] += 1

    @property
    def writes(self) -> int:
        write_verbs = {"create", "update", "patch", "delete", "deletecollection"}
        return sum(n for (verb, _, _), n in self.requests.items() if verb in write_verbs)

    def reset(self) -> None:
        self.requests.clear()


@dataclass
class Cluster:
    """Everything one sandbox serves."""

    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    timings: Timings = field(default_factory=Timings)
    accounting: Accounting = field(default_factory=Accounting)
    name: str = "sandbox"
    injection_successes: Counter[str] = field(default_factory=Counter)
    """Pods the sidecar injector mutated, by revision (``sidecar_injection_success_total``)."""
    injection_failures: Counter[str] = field(default_factory=Counter)
    """Pod creations refused because the revision's istiod was not ready, by revision."""

    def __post_init__(self) -> None:
        # What the API server and kube-controller-manager provide before anyone connects.
        bootstrap(self.store)
