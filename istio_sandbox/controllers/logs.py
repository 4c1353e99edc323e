"""Container logs for ``GET /api/v1/namespaces/{ns}/pods/{name}/log``.

Lines are deterministic (seeded by pod uid and container) so tests can assert on them, and
they tell the pod's story: which istiod a sidecar connects to, and why a pod never gets Ready.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.injector import INIT_CONTAINER
from istio_sandbox.controllers.istiod import DISCOVERY_CONTAINER
from istio_sandbox.controllers.objects import PODS, is_ready
from istio_sandbox.istio.names import ANNOTATION_REV, ANNOTATION_STATUS, PROXY_CONTAINER
from istio_sandbox.store import Obj, StoreError


class BadRequest(StoreError):
    """Rendered as 400 BadRequest, like the API server's log endpoint errors."""

    code = 400
    reason = "BadRequest"


def _start(pod: Obj) -> datetime:
    ts = (pod.get("status") or {}).get("startTime") or pod["metadata"].get("creationTimestamp")
    try:
        return datetime.strptime(str(ts), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime(2024, 1, 1, tzinfo=UTC)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def _container_state(pod: Obj, container: str) -> Obj:
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") == container:
            return dict(cs)
    return {}


def _revision(pod: Obj) -> str:
    annotations = pod["metadata"].get("annotations") or {}
    rev = annotations.get(ANNOTATION_REV)
    if rev:
        return str(rev)
    try:
        return str(
            json.loads(annotations.get(ANNOTATION_STATUS, "{}")).get("revision") or "default"
        )
    except ValueError:
        return "default"


def _proxy_lines(pod: Obj, cs: Obj, start: datetime) -> list[tuple[datetime, str]]:
    rev = _revision(pod)
    istiod = f"istiod-{rev}" if rev != "default" else "istiod"
    address = f"{istiod}.istio-system.svc:15012"
    image = next(
        (
            str(c.get("image", ""))
            for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") == PROXY_CONTAINER
        ),
        "",
    )
    version = image.rsplit(":", 1)[-1] if ":" in image else "unknown"
    lines = [
        f"info\tFIPS mode disabled; Istio version {version}",
        "info\tProxy role\tips=[" + str((pod.get("status") or {}).get("podIP", "")) + "] "
        f"type=sidecar id={pod['metadata']['name']}.{pod['metadata']['namespace']} "
        f"domain={pod['metadata']['namespace']}.svc.cluster.local",
        "info\tsds\tStarting SDS grpc server",
        f"info\tPilot SAN: [{istiod}.istio-system.svc]",
        "info\tStarting proxy agent",
        f'info\txdsproxy\tInitializing with upstream address "{address}" and cluster "Kubernetes"',
        "info\tEnvoy command: [-c etc/istio/proxy/envoy-rev.json --drain-time-s 45 "
        "--drain-strategy immediate --local-address-ip-version v4 --file-flush-interval-msec "
        "1000 --log-format %Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t -l warning "
        "--component-log-level misc:error]",
        "info\tcache\tgenerated new workload certificate\tresourceName=default latency=12ms "
        "ttl=23h59m59.1s",
        f"info\tads\tADS: new connection for node:{pod['metadata']['name']}."
        f"{pod['metadata']['namespace']}-1",
    ]
    if is_ready(pod):
        lines.append("info\tReadiness succeeded in 1.0s")
        lines.append("info\tEnvoy proxy is ready")
    else:
        lines += [
            f"warning\tenvoy config external/envoy/source/extensions/config_subscription/grpc/"
            f"grpc_stream.h:191\tStreamAggregatedResources gRPC config stream to xds-grpc closed "
            f'since 31s ago: 14, connection error: desc = "transport: Error while dialing: dial '
            f'tcp {address}: connect: connection refused"\tthread=21',
            "warn\tEnvoy proxy is NOT ready: config received from XDS server, but was rejected: "
            "cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected",
        ]
    if "waiting" in (cs.get("state") or {}):
        lines.append("error\tEnvoy exited with error: exit status 1")
    return [(start + timedelta(milliseconds=37 * i), line) for i, line in enumerate(lines)]


def _app_lines(pod: Obj, container: str, cs: Obj, start: datetime) -> list[tuple[datetime, str]]:
    seed = int(hashlib.sha256(f"{pod['metadata'].get('uid')}/{container}".encode()).hexdigest(), 16)
    paths = ["/", "/healthz", "/api/v1/items", "/api/v1/orders", "/metrics"]
    lines = [f"Starting {container} on :8080", "Listening for connections"]
    for i in range(12):
        seed, pick = divmod(seed, len(paths))
        seed, ms = divmod(seed, 50)
        lines.append(f'GET {paths[pick]} 200 {ms + 1}ms "10.244.0.{(i * 7) % 250 + 2}"')
    if "waiting" in (cs.get("state") or {}) or (cs.get("restartCount") or 0) > 0:
        lines.append("panic: failed to load configuration: connection refused")
        lines.append("exit status 1")
    elif not is_ready(pod) and (pod.get("status") or {}).get("phase") == "Running":
        lines.append("readiness check failed: upstream dependency unavailable (503)")
    return [(start + timedelta(milliseconds=250 * i), line) for i, line in enumerate(lines)]


def _istiod_lines(pod: Obj, start: datetime) -> list[tuple[datetime, str]]:
    lines = [
        'info\tFLAG: --domain="cluster.local"',
        "info\tstarting HTTP service at [::]:8080",
        "info\tstarting gRPC discovery service at [::]:15010",
        "info\tads\tAll caches have been synced up in 1.2s, marking server ready",
    ]
    return [(start + timedelta(milliseconds=200 * i), line) for i, line in enumerate(lines)]


def pod_log(
    cluster: Cluster, namespace: str, pod: str, container: str | None, tail_lines: int | None
) -> str:
    """The log text of one container, as ``kubectl logs`` prints it.

    Args:
        cluster: The sandbox.
        namespace: Pod namespace.
        pod: Pod name.
        container: Container name; may be omitted only for single-container pods.
        tail_lines: Keep only the last N lines; None for all.

    Returns:
        Newline-terminated lines (empty string when there is nothing yet).

    Raises:
        NotFound: no such pod.
        BadRequest: container missing/unknown, or the container has not started.
    """
    obj = cluster.store.get(PODS, namespace, pod)
    spec = obj.get("spec") or {}
    names = [str(c.get("name")) for c in spec.get("containers") or []]
    init_names = [str(c.get("name")) for c in spec.get("initContainers") or []]
    if not container:
        if len(names) != 1:
            choices = " ".join(names)
            msg = f"a container name must be specified for pod {pod}, choose one of: [{choices}]"
            if init_names:
                msg += f" or one of the init containers: [{' '.join(init_names)}]"
            raise BadRequest(msg)
        container = names[0]
    if container not in names and container not in init_names:
        raise BadRequest(f"container {container} is not valid for pod {pod}")
    cs = _container_state(obj, container)
    if not cs:
        raise BadRequest(
            f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
        )
    start = _start(obj)
    if container == PROXY_CONTAINER:
        entries = _proxy_lines(obj, cs, start)
    elif container == INIT_CONTAINER:
        entries = [
            (
                start,
                "info\tIstio iptables environment: ENVOY_PORT=15001 INBOUND_CAPTURE_PORT=15006",
            ),
            (start, "info\tIptables rules applied"),
        ]
    elif container == DISCOVERY_CONTAINER:
        entries = _istiod_lines(obj, start)
    else:
        entries = _app_lines(obj, container, cs, start)
    lines = [f"{_stamp(t)}\t{text}" for t, text in entries]
    if tail_lines is not None and tail_lines >= 0:
        lines = lines[-tail_lines:] if tail_lines else []
    return "".join(f"{line}\n" for line in lines)
