"""Pod facts read by discovery, verification and diagnostics."""

from __future__ import annotations

import json

from istio_upgrade.activities.discovery import injected_revision, pod_info
from istio_upgrade.activities.migration import verify


def _pod(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_revision_comes_from_annotations_never_labels() -> None:
    assert injected_revision(_pod({"istio.io/rev": "1-31-0"}, {})) is None
    assert injected_revision(_pod({}, {"istio.io/rev": "1-31-0"})) == "1-31-0"
    status = json.dumps({"revision": "1-30-3"})
    assert injected_revision(_pod({}, {"sidecar.istio.io/status": status})) == "1-30-3"


def test_annotation_opt_out_counts_like_the_label() -> None:
    assert pod_info(_pod({"sidecar.istio.io/inject": "false"}, {})).opted_out
    assert pod_info(_pod({}, {"sidecar.istio.io/inject": "false"})).opted_out
    assert not pod_info(_pod({}, {"sidecar.istio.io/inject": "true"})).opted_out


class _OnePod:
    cluster = "c"

    def __init__(self, pod: dict[str, object]) -> None:
        self.pod = pod

    def list(self, *_: object, **__: object) -> list[dict[str, object]]:
        return [self.pod]


def test_verify_ignores_a_pod_opted_out_by_annotation() -> None:
    kube = _OnePod(_pod({}, {"sidecar.istio.io/inject": "false"}))
    report = verify(kube, ["ns"], "1-31-0")  # type: ignore[arg-type]
    assert report.ok and not report.stragglers


class _NoEvents:
    cluster = "c"

    def list(self, *_: object, **__: object) -> list[dict[str, object]]:
        raise RuntimeError("events are forbidden")

    def pod_log(self, *_: object) -> str:
        return "proxy log"


def test_diagnostics_survive_unreadable_events() -> None:
    from istio_upgrade.activities.diagnostics import collect
    from istio_upgrade.models.progress import Straggler

    straggler = Straggler(namespace="ns", pod="p", revision=None, reason="no sidecar")
    found = collect(_NoEvents(), [straggler], 10)  # type: ignore[arg-type]
    assert found[0].proxy_log == "proxy log"
    assert "events unavailable" in found[0].events[0]
