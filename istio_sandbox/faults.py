"""Fault model of the sandbox: API faults, rollout faults and mesh-traffic faults.

Faults come from a scenario file and can be replaced at run time through the admin endpoint
(``PUT /sandbox/faults``), so tests and the demo can break things while an upgrade runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiFault(_Strict):
    """Make matching API requests fail, slow down, drop or conflict."""

    kind: Literal["status", "latency", "drop", "conflict"]
    """status: answer ``code`` with a Status body; latency: delay ``latency_ms`` then serve;
    drop: close the connection without an answer; conflict: answer 409 to writes."""
    code: int = Field(500, description="HTTP code for kind=status: 429, 500 or 503.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After header sent with a 429.")
    latency_ms: int = Field(0, ge=0)
    verbs: list[str] = Field(
        default_factory=list,
        description="get, list, watch, create, update, patch, delete; empty = all.",
    )
    resources: list[str] = Field(
        default_factory=list, description="Plural resource names (pods, deployments); empty = all."
    )
    namespaces: list[str] = Field(default_factory=list, description="Empty = all.")
    probability: float = Field(1.0, ge=0.0, le=1.0)
    count: int | None = Field(
        None, ge=0, description="Fire at most this many times; None = always."
    )


class RolloutFault(_Strict):
    """Make pods of matching workloads misbehave."""

    kind: Literal["stuck", "never_ready", "crash"]
    """stuck: new pods are never created for a rollout; never_ready: pods start but never
    pass readiness; crash: pods restart in a loop (never Ready, restartCount grows)."""
    namespace: str
    workload: str | None = Field(
        None, description="Deployment/StatefulSet/DaemonSet name; None = all."
    )
    revision: str | None = Field(
        None, description="Only pods injected by this Istio revision; None = any pod."
    )


class TrafficFault(_Strict):
    """Change the mesh traffic that matching workloads serve."""

    namespaces: list[str] = Field(default_factory=list, description="Empty = every namespace.")
    workloads: list[str] = Field(default_factory=list, description="Empty = every workload.")
    revision: str | None = Field(
        None,
        description="Only requests served by pods whose sidecar came from this revision; "
        "None = whatever the revision (a global incident).",
    )
    error_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Extra share of HTTP 5xx.")
    error_code: int = Field(503, ge=500, le=599)
    reset_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Extra share of response_code 0.")
    grpc_error_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="Extra share of gRPC UNAVAILABLE (14) on gRPC workloads."
    )
    latency_ms: float = Field(0.0, ge=0.0, description="Added to every request's duration.")
    traffic_factor: float = Field(
        1.0, ge=0.0, description="Multiplies the request rate: 0 silently drops all traffic."
    )
    telemetry_loss: bool = Field(False, description="Matching series stop advancing in /metrics.")
    xds_rejects_per_s: float = Field(
        0.0, ge=0.0, description="pilot_total_xds_rejects increase for the revision named."
    )


class LabelRevertFault(_Strict):
    """A GitOps controller's self-heal (Argo CD ``selfHeal``, Flux): a namespace whose labels
    change is set back to the labels it had before, ``delay_s`` seconds later."""

    namespaces: list[str] = Field(default_factory=list, description="Empty = every namespace.")
    delay_s: float = Field(5.0, ge=0.0, description="Seconds between the change and the revert.")
    count: int | None = Field(
        None, ge=0, description="Revert at most this many times; None = always."
    )


class Faults(_Strict):
    api: list[ApiFault] = Field(default_factory=list)
    rollouts: list[RolloutFault] = Field(default_factory=list)
    traffic: list[TrafficFault] = Field(default_factory=list)
    labels: list[LabelRevertFault] = Field(default_factory=list)
