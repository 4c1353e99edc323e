"""Uninstall by inventory: exactly what was applied, webhooks first."""

from __future__ import annotations

import json
from typing import Any

from istio_upgrade.activities.installer import uninstall


class _Recorder:
    cluster = "c"

    def __init__(self, refs: list[dict[str, str]]) -> None:
        self.inventory = {"data": {"objects": json.dumps(refs)}}
        self.deleted: list[str] = []

    def get_or_none(self, *_: Any) -> dict[str, Any]:
        return self.inventory

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.deleted.append(f"{kind}/{name}")
        return True


def test_webhooks_go_first_whatever_the_bundle_order() -> None:
    refs = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "name": "istio-sidecar-injector-1-31-0"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "istiod-1-31-0",
         "namespace": "istio-system"},
        {"apiVersion": "v1", "kind": "Service", "name": "istiod-1-31-0",
         "namespace": "istio-system"},
    ]  # fmt: skip
    kube = _Recorder(refs)
    result = uninstall(kube, "1-31-0")  # type: ignore[arg-type]
    assert result.from_inventory
    assert kube.deleted == [
        "MutatingWebhookConfiguration/istio-sidecar-injector-1-31-0",
        "Service/istiod-1-31-0",
        "Deployment/istiod-1-31-0",
        "ConfigMap/istio-upgrade-inventory-1-31-0",
    ]
