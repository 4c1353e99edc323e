"""Mesh traffic: request, error and latency counters that advance with time.

Every workload with a request rate receives ``rps`` requests per second, split evenly across
its callers (or all from outside the mesh when nothing calls it) and across the Ready pods on
both sides. Each destination pod's sidecar revision selects the traffic faults that apply.
Counts are deterministic: fractional requests and errors carry over between ticks, so the
observed error ratio converges exactly to the configured one without any randomness.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field

from istio_sandbox.cluster import Cluster
from istio_sandbox.faults import TrafficFault
from istio_sandbox.mesh.pods import PodIndex, PodInfo
from istio_sandbox.resources import BY_KEY
from istio_sandbox.scenario import Scenario, WorkloadSpec

UNKNOWN = "unknown"
# Istio's default buckets of istio_request_duration_milliseconds (the stats filter's
# DEFAULT_BUCKETS, istio/proxy source/extensions/filters/http/istio_stats), as Envoy exposes
# them: each ``le`` edge in ms; +Inf is implicit.
BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
LATENCY_SIGMA = 0.5
"""Spread of the log-normal request duration around its median."""

SeriesKey = tuple[str, ...]
"""Label values in the order of :data:`REQUEST_LABELS`."""

REQUEST_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)


TCP_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
)
"""Labels of ztunnel's ``istio_tcp_*`` series (ztunnel ``src/proxy/metrics.rs``
``CommonTrafficLabels``, the subset the sandbox fills)."""
REQUEST_BYTES = 512
RESPONSE_BYTES = 2048
AMBIENT = "\x00ambient"
"""Group key of destination pods whose traffic ztunnel carries (no sidecar, enrolled)."""
LABEL_USE_WAYPOINT = "istio.io/use-waypoint"
NAMESPACES = BY_KEY["/namespaces"]


@dataclass
class TcpSeries:
    """ztunnel's counters of one label set."""

    opened: float = 0.0
    closed: float = 0.0
    sent_bytes: float = 0.0
    received_bytes: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    """A workload as traffic sees it."""

    namespace: str
    spec: WorkloadSpec

    @property
    def canonical_revision(self) -> str:
        return self.spec.labels.get("version", "v1")


@dataclass
class RequestSeries:
    """Counters of one label set: requests and the latency histogram."""

    count: float = 0.0
    sum_ms: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS_MS))


def _lognormal_cdf(edge_ms: float, median_ms: float) -> float:
    return 0.5 * (1.0 + math.erf(math.log(edge_ms / median_ms) / (LATENCY_SIGMA * math.sqrt(2))))


def _fault_matches(fault: TrafficFault, namespace: str, workload: str, revision: str) -> bool:
    if fault.namespaces and namespace not in fault.namespaces:
        return False
    if fault.workloads and workload not in fault.workloads:
        return False
    return fault.revision is None or fault.revision == revision


@functools.lru_cache(maxsize=1024)
def _bucket_shares(median_ms: float) -> tuple[float, ...]:
    """Share of requests at or under each bucket edge."""
    return tuple(_lognormal_cdf(edge, median_ms) for edge in BUCKETS_MS)


@dataclass(frozen=True)
class _Outcome:
    response_code: str
    grpc_status: str
    flags: str
    share: float


class TrafficModel:
    """Advances the mesh's counters; :meth:`advance` is called by a timer or by tests."""

    def __init__(self, cluster: Cluster, scenario: Scenario, pods: PodIndex | None = None) -> None:
        self.cluster = cluster
        self.pods = pods if pods is not None else PodIndex(cluster.store)
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.callers: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for _, ns in scenario.all_namespaces():
            for w in ns.workloads:
                self.endpoints[(ns.name, w.name)] = Endpoint(ns.name, w)
            for g in ns.gateways:
                if g.gateway_class == "istio":
                    w = g.as_workload()
                    self.endpoints[(ns.name, w.name)] = Endpoint(ns.name, w)
        for (ns_name, _), ep in self.endpoints.items():
            for edge in ep.spec.calls:
                target_ns, _, target = edge.rpartition("/")
                key = (target_ns or ns_name, target)
                self.callers.setdefault(key, []).append((ns_name, ep.spec.name))
        self.requests: dict[SeriesKey, RequestSeries] = {}
        self.tcp: dict[SeriesKey, TcpSeries] = {}
        """ztunnel's ``istio_tcp_*`` series (reporter ``destination``), by :data:`TCP_LABELS`."""
        self.xds_rejects: Counter[str] = Counter()
        self._carry: dict[tuple[object, ...], float] = {}
        self.elapsed_s = 0.0

    # -- counting ---------------------------------------------------------------------------

    def _take(self, key: tuple[object, ...], amount: float) -> int:
        """Whole units out of an accumulating amount; the remainder waits for the next tick."""
        total = self._carry.get(key, 0.0) + amount
        whole = math.floor(total + 1e-9)
        self._carry[key] = total - whole
        return whole

    def advance(self, dt: float) -> None:
        """Move every counter forward by ``dt`` seconds of traffic."""
        if dt <= 0:
            return
        self.elapsed_s += dt
        faults = self.cluster.faults.traffic
        for ep in self.endpoints.values():
            if ep.spec.rps > 0:
                self._serve(ep, dt, faults)
        for fault in faults:
            if fault.xds_rejects_per_s > 0:
                revisions = [fault.revision] if fault.revision else self._revisions()
                for rev in revisions:
                    n = self._take(("xds", rev), fault.xds_rejects_per_s * dt)
                    if n:
                        self.xds_rejects[rev] += n

    def _revisions(self) -> list[str]:
        return sorted({rev for rev, _ in self.pods.proxies})

    def _serve(self, dest: Endpoint, dt: float, faults: list[TrafficFault]) -> None:
        dest_pods = self.pods.ready_pods(dest.namespace, dest.spec.name)
        sources: list[tuple[str, str] | None] = [
            *self.callers.get((dest.namespace, dest.spec.name), [])
        ] or [None]
        per_source = dest.spec.rps * dt / len(sources)
        for src_key in sources:
            src = self.endpoints.get(src_key) if src_key else None
            if src is None:
                src_groups = {False: 1.0}
            else:
                src_pods = self.pods.ready_pods(src.namespace, src.spec.name)
                if not src_pods:
                    continue  # a caller with no running pods sends nothing
                injected = sum(1 for p in src_pods if p.revision)
                src_groups = {True: injected / len(src_pods), False: 1 - injected / len(src_pods)}
            if not dest_pods:
                if src is not None and src_groups.get(True):
                    self._no_upstream(src, dest, per_source * src_groups[True])
                continue
            by_rev: Counter[str] = Counter(self._group(p) for p in dest_pods)
            for group, n_pods in by_rev.items():
                revision = "" if group == AMBIENT else group
                matching = [
                    f for f in faults if _fault_matches(f, dest.namespace, dest.spec.name, revision)
                ]
                if any(f.telemetry_loss for f in matching):
                    continue
                factor = math.prod(f.traffic_factor for f in matching)
                share = n_pods / len(dest_pods)
                for src_injected, src_share in src_groups.items():
                    amount = per_source * share * src_share * factor
                    if amount <= 0:
                        continue
                    if group == AMBIENT:
                        self._record_ztunnel(src, src_injected, dest, amount, matching)
                        continue
                    self._record_flow(
                        src, src_injected, dest, bool(revision), revision, amount, matching
                    )

    def _group(self, pod: PodInfo) -> str:
        if not pod.revision and pod.ambient and pod.node in self.pods.ztunnel_nodes:
            return AMBIENT
        return pod.revision

    def _waypoint(self, namespace: str) -> str | None:
        """The waypoint the namespace uses (``istio.io/use-waypoint``), when one is Ready."""
        ns = self.cluster.store.try_get(NAMESPACES, "", namespace)
        name = ((ns or {}).get("metadata") or {}).get("labels", {}).get(LABEL_USE_WAYPOINT)
        if not name or not self.pods.ready_pods(namespace, str(name)):
            return None
        return str(name)

    def _record_ztunnel(
        self,
        src: Endpoint | None,
        src_injected: bool,
        dest: Endpoint,
        amount: float,
        matching: list[TrafficFault],
    ) -> None:
        """Requests to an ambient pod: ztunnel counts connections and bytes; a waypoint, when
        the namespace uses one, counts the requests (``reporter="waypoint"``)."""
        flow = (
            "ztunnel",
            src.namespace if src else "",
            src.spec.name if src else "",
            src_injected,
            dest.namespace,
            dest.spec.name,
        )
        total = self._take(flow, amount)
        if total == 0:
            return
        key = self._tcp_key(src if src_injected else None, dest)
        series = self.tcp.get(key)
        if series is None:
            series = self.tcp[key] = TcpSeries()
        series.opened += total
        series.closed += total
        series.received_bytes += total * REQUEST_BYTES
        series.sent_bytes += total * RESPONSE_BYTES
        if self._waypoint(dest.namespace) is None:
            return
        latency = dest.spec.latency_ms + sum(f.latency_ms for f in matching)
        for outcome, n in self._split(flow, total, self._outcomes(dest, matching)):
            if n > 0:
                self._add(
                    self._key(
                        "waypoint", src if src_injected else None, dest, outcome, "mutual_tls"
                    ),
                    n,
                    latency,
                )

    def _tcp_key(self, src: Endpoint | None, dest: Endpoint) -> SeriesKey:
        if src is None:
            source: tuple[str, ...] = (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
        else:
            source = (src.spec.name, src.namespace, src.spec.name, src.canonical_revision)
        return (
            "destination",
            *source,
            dest.spec.name,
            dest.namespace,
            f"{dest.spec.name}.{dest.namespace}.svc.cluster.local",
            dest.spec.name,
            dest.namespace,
            dest.spec.name,
            dest.canonical_revision,
            "tcp",
            "-",
            "mutual_tls",
        )

    def _split(
        self, flow: tuple[object, ...], total: int, outcomes: list[_Outcome]
    ) -> list[tuple[_Outcome, int]]:
        """``total`` requests split across outcomes; failures from their own accumulators."""
        counts: list[tuple[_Outcome, int]] = []
        failed = 0
        for o in outcomes[1:]:
            n = min(
                self._take(("err", *flow, o.response_code, o.grpc_status), total * o.share),
                total - failed,
            )
            failed += n
            counts.append((o, n))
        counts.insert(0, (outcomes[0], total - failed))
        return counts

    def _outcomes(self, dest: Endpoint, matching: list[TrafficFault]) -> list[_Outcome]:
        grpc = dest.spec.protocol == "grpc"
        ok_code = "200"
        outcomes: list[_Outcome] = []
        base = dest.spec.error_ratio
        if base:
            outcomes.append(
                _Outcome("200", "14", "-", base) if grpc else _Outcome("503", "", "-", base)
            )
        for f in matching:
            if f.error_ratio:
                outcomes.append(
                    _Outcome(str(f.error_code), "14" if grpc else "", "-", f.error_ratio)
                )
            if f.reset_ratio:
                outcomes.append(_Outcome("0", "" if not grpc else "14", "UC", f.reset_ratio))
            if f.grpc_error_ratio and grpc:
                outcomes.append(_Outcome("200", "14", "-", f.grpc_error_ratio))
        bad = sum(o.share for o in outcomes)
        if bad > 1:
            outcomes = [
                _Outcome(o.response_code, o.grpc_status, o.flags, o.share / bad) for o in outcomes
            ]
            bad = 1.0
        outcomes.insert(0, _Outcome(ok_code, "0" if grpc else "", "-", 1.0 - bad))
        return outcomes

    def _record_flow(
        self,
        src: Endpoint | None,
        src_injected: bool,
        dest: Endpoint,
        dest_injected: bool,
        revision: str,
        amount: float,
        matching: list[TrafficFault],
    ) -> None:
        flow = (
            src.namespace if src else "",
            src.spec.name if src else "",
            src_injected,
            dest.namespace,
            dest.spec.name,
            revision,
        )
        total = self._take(("req", *flow), amount)
        if total == 0:
            return
        latency = dest.spec.latency_ms + sum(f.latency_ms for f in matching)
        outcomes = self._outcomes(dest, matching)
        # Failures are taken first from their own accumulators; successes are the rest, so
        # each tick's counts add up exactly to the requests sent.
        for outcome, n in self._split(flow, total, outcomes):
            if n <= 0:
                continue
            if dest_injected:
                self._add(
                    self._key(
                        "destination",
                        src if src_injected else None,
                        dest,
                        outcome,
                        "mutual_tls" if src_injected else "none",
                    ),
                    n,
                    latency,
                )
            if src is not None and src_injected:
                self._add(self._key("source", src, dest, outcome, "unknown"), n, latency)

    def _no_upstream(self, src: Endpoint, dest: Endpoint, amount: float) -> None:
        """Callers whose destination has no Ready pod see 503 ``UH`` (no healthy upstream)."""
        n = self._take(("uh", src.namespace, src.spec.name, dest.namespace, dest.spec.name), amount)
        if n:
            grpc = dest.spec.protocol == "grpc"
            outcome = _Outcome("503", "14" if grpc else "", "UH", 1.0)
            self._add(self._key("source", src, dest, outcome, "unknown"), n, 0.1)

    def _key(
        self, reporter: str, src: Endpoint | None, dest: Endpoint, outcome: _Outcome, security: str
    ) -> SeriesKey:
        if src is None:
            source: tuple[str, ...] = (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
        else:
            source = (src.spec.name, src.namespace, src.spec.name, src.canonical_revision)
        return (
            reporter,
            *source,
            dest.spec.name,
            dest.namespace,
            f"{dest.spec.name}.{dest.namespace}.svc.cluster.local",
            dest.spec.name,
            dest.namespace,
            dest.spec.name,
            dest.canonical_revision,
            dest.spec.protocol,
            outcome.response_code,
            outcome.grpc_status,
            outcome.flags,
            security,
        )

    def _add(self, key: SeriesKey, n: int, median_ms: float) -> None:
        series = self.requests.get(key)
        if series is None:
            series = self.requests[key] = RequestSeries()
        series.count += n
        series.sum_ms += n * median_ms * math.exp(LATENCY_SIGMA**2 / 2)
        for i, share in enumerate(_bucket_shares(median_ms)):
            series.buckets[i] += n * share


__all__ = [
    "BUCKETS_MS",
    "REQUEST_LABELS",
    "TCP_LABELS",
    "Endpoint",
    "PodInfo",
    "RequestSeries",
    "TcpSeries",
    "TrafficModel",
]
