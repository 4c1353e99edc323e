"""Reading Kubernetes objects the way the plan needs them: rollout status and sidecar revision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from istio_upgrade.activities.discovery import injected_revision, pod_info, proxy_version
from istio_upgrade.activities.migration import MAX_POLL_SECONDS, poll_interval, rollout_pending


def deploy(generation: int = 2, **status: Any) -> dict[str, Any]:
    full = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    full.update(status)
    return {"metadata": {"generation": generation}, "spec": {"replicas": 3}, "status": full}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (deploy(), None),
        (deploy(generation=3), "waiting for the spec update to be observed"),
        (deploy(updatedReplicas=1), "1 of 3 updated replicas"),
        (deploy(replicas=4), "1 old replicas pending termination"),
        (deploy(availableReplicas=2), "2 of 3 updated replicas available"),
        (
            deploy(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            "exceeded its progress deadline",
        ),
    ],
)
def test_deployment_rollout_status(obj: dict[str, Any], expected: str | None) -> None:
    assert rollout_pending("Deployment", obj) == expected


def test_statefulset_and_daemonset_rollout_status() -> None:
    sts: dict[str, Any] = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "currentRevision": "a",
            "updateRevision": "b",
        },
    }
    assert (
        rollout_pending("StatefulSet", sts) == "waiting for the update revision to become current"
    )
    sts["status"]["currentRevision"] = "b"
    assert rollout_pending("StatefulSet", sts) is None
    sts["status"]["readyReplicas"] = 1
    assert rollout_pending("StatefulSet", sts) == "1 of 2 pods ready"
    ds: dict[str, Any] = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert rollout_pending("DaemonSet", ds) == "2 of 3 updated pods available"
    ds["status"]["numberAvailable"] = 3
    assert rollout_pending("DaemonSet", ds) is None


def pod(annotations: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": annotations, "labels": labels or {}},
        "spec": {
            "containers": [
                {"name": "app", "image": "shop/web:7"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0"},
            ]
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_injected_revision_comes_from_annotations_never_labels() -> None:
    assert injected_revision(pod({"istio.io/rev": "1-31-0"})) == "1-31-0"
    status = json.dumps({"revision": "1-30-3", "containers": ["istio-proxy"]})
    assert injected_revision(pod({"sidecar.istio.io/status": status})) == "1-30-3"
    assert injected_revision(pod({}, labels={"istio.io/rev": "1-31-0"})) is None
    assert injected_revision(pod({"sidecar.istio.io/status": "not json"})) is None


def test_pod_info_reads_proxy_version_opt_out_and_gateway() -> None:
    info = pod_info(
        pod(
            {"istio.io/rev": "1-31-0", "inject.istio.io/templates": "gateway"},
            labels={"sidecar.istio.io/inject": "false"},
        )
    )
    assert info.proxy_version == "1.31.0" and info.ready and info.active
    assert info.opted_out and info.gateway
    assert proxy_version({"spec": {"containers": [{"name": "app", "image": "x:1"}]}}) is None


@pytest.mark.parametrize(
    ("waited", "expected"),
    [(0.0, 1.0), (5.0, 1.0), (30.0, 3.0), (90.0, 9.0), (600.0, MAX_POLL_SECONDS)],
)
def test_rollout_polls_slow_down_as_the_wait_grows(waited: float, expected: float) -> None:
    assert poll_interval(1.0, waited) == pytest.approx(expected)
