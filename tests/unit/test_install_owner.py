"""The install inventory records this upgrade as installer only of a revision it created."""

from __future__ import annotations

from typing import Any

import pytest

from istio_upgrade.activities.installer import install
from istio_upgrade.models.activities import InstallInput
from istio_upgrade.models.spec import ClusterRef


class _Cluster:
    cluster = "c"

    def __init__(self, existing: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.existing = existing
        self.applied: list[dict[str, Any]] = []

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        return kind.lower() + "s", "Webhook" not in kind

    def get_or_none(
        self, _api_version: str, kind: str, name: str, *_: Any
    ) -> dict[str, Any] | None:
        return self.existing.get((kind, name))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        return obj


def _owner_recorded(kube: _Cluster) -> str | None:
    inventory = kube.applied[0]
    assert inventory["metadata"]["name"] == "istio-upgrade-inventory-1-31-0"
    value: str | None = inventory["metadata"]["annotations"].get("istio-upgrade.io/upgrade-id")
    return value


SPEC = InstallInput(
    cluster=ClusterRef(name="c"), version="1.31.0", revision="1-31-0", upgrade_id="mine"
)
ISTIOD = ("Deployment", "istiod-1-31-0")
INVENTORY = ("ConfigMap", "istio-upgrade-inventory-1-31-0")


def _inventory(owner: str | None) -> dict[str, Any]:
    annotations = {"istio-upgrade.io/upgrade-id": owner} if owner else {}
    return {"metadata": {"annotations": annotations}}


@pytest.mark.parametrize(
    ("existing", "owner"),
    [
        ({}, "mine"),  # a fresh install
        ({INVENTORY: _inventory("mine")}, "mine"),  # a retry after the inventory was written
        ({INVENTORY: _inventory("mine"), ISTIOD: {}}, "mine"),  # a retry after istiod, too
        ({ISTIOD: {}}, None),  # someone else's revision, adopted with force
        ({INVENTORY: _inventory("earlier"), ISTIOD: {}}, "earlier"),  # another upgrade's
    ],
    ids=["fresh", "retry", "retry-after-istiod", "adopted", "other-upgrade"],
)
def test_installer_recorded_only_for_revisions_it_created(
    existing: dict[tuple[str, str], dict[str, Any]], owner: str | None
) -> None:
    kube = _Cluster(existing)
    install(kube, SPEC)  # type: ignore[arg-type]
    assert _owner_recorded(kube) == owner
