"""The state one sandbox process shares between its HTTP layer, controllers and mesh model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from istio_sandbox.faults import Faults
from istio_sandbox.identity import Tokens
from istio_sandbox.requestlog import RequestLog
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


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
NOT_STORED = frozenset(
    {
        "selfsubjectaccessreviews",
        "subjectaccessreviews",
        "localsubjectaccessreviews",
        "selfsubjectrulesreviews",
    }
)
"""Resources whose ``create`` only asks a question and stores nothing: never writes."""


@dataclass
class Accounting:
    """API requests counted by (verb, resource, namespace); writes counted apart; and the
    ordered log of every request with its caller and answer (:class:`RequestLog`)."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    log: RequestLog = field(default_factory=RequestLog)

    def record(self, verb: str, resource: str, namespace: str) -> None:
        self.requests[(verb, resource, namespace)] += 1

    @property
    def writes(self) -> int:
        return sum(
            n
            for (verb, resource, _), n in self.requests.items()
            if verb in WRITE_VERBS and resource not in NOT_STORED
        )

    def reset(self) -> None:
        """Clear the counts and the log (whose ``seq`` keeps growing)."""
        self.requests.clear()
        self.log.clear()


@dataclass
class Cluster:
    """Everything one sandbox serves."""

    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    timings: Timings = field(default_factory=Timings)
    accounting: Accounting = field(default_factory=Accounting)
    tokens: Tokens = field(default_factory=Tokens)
    """Bearer tokens issued through ``POST /sandbox/tokens`` and whom they stand for."""
    rbac_enforced: bool = False
    """Authorize requests with RBAC (:mod:`istio_sandbox.rbac`); off, everyone may do
    everything (tokens still identify callers)."""
    name: str = "sandbox"
    injection_successes: Counter[str] = field(default_factory=Counter)
    """Pods the sidecar injector mutated, by revision (``sidecar_injection_success_total``)."""
    injection_failures: Counter[str] = field(default_factory=Counter)
    """Pod creations refused because the revision's istiod was not ready, by revision."""

    def __post_init__(self) -> None:
        # What the API server and kube-controller-manager provide before anyone connects.
        bootstrap(self.store)
