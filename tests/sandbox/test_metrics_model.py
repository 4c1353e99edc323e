"""The traffic model and its exposition, driven by pods written straight into the store."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from istio_sandbox.faults import TrafficFault
from istio_sandbox.mesh import BUCKETS_MS, Mesh
from istio_sandbox.resources import BY_KEY
from istio_sandbox.scenario import (
    Scenario,
    new_cluster,
    parse_scenario,
    populate_control_plane,
)
from istio_sandbox.store import Store

PODS = BY_KEY["/pods"]
Sample = tuple[dict[str, str], float]


def _scenario(**workload_overrides: Any) -> Scenario:
    api = {"name": "api", "rps": 100, "latency_ms": 20, **workload_overrides}
    return parse_scenario(
        {
            "name": "t",
            "revisions": [{"version": "1.30.3"}, {"version": "1.31.0"}],
            "tags": {"default": "1-30-3"},
            "namespaces": [
                {
                    "name": "shop",
                    "labels": {"istio.io/rev": "1-30-3"},
                    "workloads": [{"name": "web", "replicas": 1, "calls": ["api"]}, api],
                },
                {"name": "outside", "workloads": [{"name": "plain", "rps": 50}]},
            ],
        }
    )


def _pod(
    store: Store, ns: str, name: str, app: str, revision: str = "", *, ready: bool = True
) -> None:
    containers: list[dict[str, Any]] = [{"name": app, "image": f"example/{app}:1"}]
    annotations: dict[str, str] = {}
    if revision:
        version = revision.replace("-", ".")
        containers.append({"name": "istio-proxy", "image": f"docker.io/istio/proxyv2:{version}"})
        annotations = {"istio.io/rev": revision}
    store.create(
        PODS,
        {
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app": app},
                "annotations": annotations,
            },
            "spec": {"containers": containers},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        },
    )


def _mesh(scenario: Scenario) -> Mesh:
    cluster = new_cluster(scenario)
    populate_control_plane(cluster, scenario)
    return Mesh(cluster, scenario)


def _samples(mesh: Mesh, name: str) -> list[Sample]:
    out: list[Sample] = []
    for family in text_string_to_metric_families(mesh.page.decode()):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), sample.value))
    return out


def _total(samples: list[Sample], **match: str) -> float:
    return sum(v for labels, v in samples if all(labels.get(k) == m for k, m in match.items()))


def test_error_ratio_converges_exactly_to_the_fault() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "web-1", "web", "1-30-3")
    for i in range(3):
        _pod(store, "shop", f"api-{i}", "api", "1-31-0")
    mesh.cluster.faults.traffic = [
        TrafficFault(namespaces=["shop"], revision="1-31-0", error_ratio=0.05)
    ]
    for _ in range(40):
        mesh.advance(0.5)
    requests = _samples(mesh, "istio_requests_total")
    dest = dict(reporter="destination", destination_workload="api")
    total = _total(requests, **dest)
    assert total == pytest.approx(100 * 20, abs=1)
    errors = _total(requests, response_code="503", **dest)
    assert errors / total == pytest.approx(0.05, abs=1 / total)


def test_fault_of_another_revision_does_not_apply() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "web-1", "web", "1-30-3")
    _pod(store, "shop", "api-old", "api", "1-30-3")
    _pod(store, "shop", "api-new", "api", "1-31-0")
    mesh.cluster.faults.traffic = [TrafficFault(revision="1-31-0", error_ratio=0.2)]
    for _ in range(20):
        mesh.advance(0.5)
    requests = _samples(mesh, "istio_requests_total")
    dest = dict(reporter="destination", destination_workload="api")
    # Half the pods are on the broken revision: half the configured ratio overall.
    ratio = _total(requests, response_code="503", **dest) / _total(requests, **dest)
    assert ratio == pytest.approx(0.1, abs=0.002)


def test_both_reporters_and_standard_labels() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "web-1", "web", "1-30-3")
    _pod(store, "shop", "api-1", "api", "1-30-3")
    mesh.advance(1.0)
    requests = _samples(mesh, "istio_requests_total")
    source = _total(requests, reporter="source", source_workload="web", destination_workload="api")
    dest = _total(
        requests, reporter="destination", source_workload="web", destination_workload="api"
    )
    assert source == dest == 100
    (labels, _) = next(s for s in requests if s[0]["reporter"] == "destination")
    assert labels == {
        "reporter": "destination",
        "source_workload": "web",
        "source_workload_namespace": "shop",
        "source_canonical_service": "web",
        "source_canonical_revision": "v1",
        "destination_workload": "api",
        "destination_workload_namespace": "shop",
        "destination_service": "api.shop.svc.cluster.local",
        "destination_service_name": "api",
        "destination_service_namespace": "shop",
        "destination_canonical_service": "api",
        "destination_canonical_revision": "v1",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }


def test_pods_without_sidecar_produce_no_istio_metrics() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "outside", "plain-1", "plain")
    _pod(store, "shop", "web-1", "web")  # no sidecar: api sees an unknown, plain-text caller
    _pod(store, "shop", "api-1", "api", "1-30-3")
    mesh.advance(1.0)
    requests = _samples(mesh, "istio_requests_total")
    assert _total(requests, destination_workload="plain") == 0
    assert _total(requests, reporter="source") == 0
    assert (
        _total(
            requests,
            reporter="destination",
            destination_workload="api",
            source_workload="unknown",
            connection_security_policy="none",
        )
        == 100
    )


def test_callers_without_pods_send_nothing() -> None:
    mesh = _mesh(_scenario())
    _pod(mesh.cluster.store, "shop", "api-1", "api", "1-30-3")
    mesh.advance(1.0)
    assert _total(_samples(mesh, "istio_requests_total")) == 0


def test_not_ready_pods_serve_nothing_and_callers_see_no_healthy_upstream() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "web-1", "web", "1-30-3")
    _pod(store, "shop", "api-1", "api", "1-30-3", ready=False)
    mesh.advance(1.0)
    requests = _samples(mesh, "istio_requests_total")
    assert _total(requests, reporter="destination") == 0
    assert _total(requests, reporter="source", response_code="503", response_flags="UH") == 100


@pytest.mark.parametrize(
    "fault",
    [TrafficFault(traffic_factor=0.0), TrafficFault(telemetry_loss=True)],
)
def test_silent_drop_and_telemetry_loss_stop_counters(fault: TrafficFault) -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "web-1", "web", "1-30-3")
    _pod(store, "shop", "api-1", "api", "1-30-3")
    mesh.advance(1.0)
    before = _total(_samples(mesh, "istio_requests_total"))
    mesh.cluster.faults.traffic = [fault]
    mesh.advance(5.0)
    assert _total(_samples(mesh, "istio_requests_total")) == before


def test_grpc_failures_use_grpc_status() -> None:
    mesh = _mesh(_scenario(protocol="grpc", error_ratio=0.1))
    _pod(mesh.cluster.store, "shop", "web-1", "web")
    _pod(mesh.cluster.store, "shop", "api-1", "api", "1-30-3")
    mesh.advance(10.0)
    requests = _samples(mesh, "istio_requests_total")
    assert _total(requests, request_protocol="grpc", grpc_response_status="14") == 100
    assert _total(requests, request_protocol="grpc", grpc_response_status="0") == 900
    assert _total(requests, request_protocol="grpc", response_code="200") == 1000


def test_latency_histogram_is_consistent() -> None:
    mesh = _mesh(_scenario(latency_ms=20))
    _pod(mesh.cluster.store, "shop", "web-1", "web")
    _pod(mesh.cluster.store, "shop", "api-1", "api", "1-30-3")
    mesh.cluster.faults.traffic = [TrafficFault(latency_ms=200)]
    mesh.advance(3.0)
    buckets = _samples(mesh, "istio_request_duration_milliseconds_bucket")
    by_series: dict[tuple[tuple[str, str], ...], dict[float, float]] = defaultdict(dict)
    for labels, value in buckets:
        le = labels.pop("le")
        by_series[tuple(sorted(labels.items()))][float(le)] = value
    (series,) = by_series.values()
    edges = sorted(series)
    assert edges == [*BUCKETS_MS, float("inf")]
    values = [series[e] for e in edges]
    assert values == sorted(values)
    assert values[-1] == 300
    count = _total(_samples(mesh, "istio_request_duration_milliseconds_count"))
    assert count == 300
    # Log-normal around a 220 ms median (sigma 0.5): P(<=250) = 0.60, P(<=100) = 0.057.
    assert series[250] / 300 == pytest.approx(0.60, abs=0.01)
    assert series[100] / 300 == pytest.approx(0.057, abs=0.005)
    mean = _total(_samples(mesh, "istio_request_duration_milliseconds_sum")) / count
    assert 220 < mean < 260


def test_pilot_xds_counts_proxies_per_revision_and_version() -> None:
    mesh = _mesh(_scenario())
    store = mesh.cluster.store
    _pod(store, "shop", "api-1", "api", "1-30-3")
    _pod(store, "shop", "api-2", "api", "1-30-3")
    _pod(store, "shop", "api-3", "api", "1-31-0")
    _pod(store, "shop", "api-4", "api", "1-31-0", ready=False)
    _pod(store, "outside", "plain-1", "plain")
    mesh.advance(0.5)
    xds = {(lab["revision"], lab["version"]): v for lab, v in _samples(mesh, "pilot_xds")}
    assert xds == {("1-30-3", "1.30.3"): 2, ("1-31-0", "1.31.0"): 1}
    store.delete(PODS, "shop", "api-1")
    store.delete(PODS, "shop", "api-2")
    mesh.advance(0.5)
    xds = {(lab["revision"], lab["version"]): v for lab, v in _samples(mesh, "pilot_xds")}
    assert xds[("1-30-3", "1.30.3")] == 0, "a drained revision reports 0, not nothing"


def test_control_plane_counters() -> None:
    mesh = _mesh(_scenario())
    mesh.cluster.faults.traffic = [TrafficFault(revision="1-31-0", xds_rejects_per_s=2)]
    mesh.cluster.injection_failures["1-31-0"] += 3
    mesh.cluster.injection_successes["1-30-3"] += 7
    mesh.advance(2.5)
    rejects = {lab["revision"]: v for lab, v in _samples(mesh, "pilot_total_xds_rejects_total")}
    assert rejects == {"1-30-3": 0, "1-31-0": 5}
    failures = {lab["revision"]: v for lab, v in _samples(mesh, "sidecar_injection_failure_total")}
    assert failures == {"1-30-3": 0, "1-31-0": 3}
    successes = {lab["revision"]: v for lab, v in _samples(mesh, "sidecar_injection_success_total")}
    assert successes == {"1-30-3": 7, "1-31-0": 0}
    internal = _samples(mesh, "pilot_total_xds_internal_errors_total")
    assert {lab["revision"] for lab, _ in internal} == {"1-30-3", "1-31-0"}
