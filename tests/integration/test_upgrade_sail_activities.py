"""The ``sail`` installer's steps one by one against the sandbox's Sail Operator (no Temporal):
the ambient skew refusal, an idempotent install with its pins, the promote's ambient upgrade
and a rollback that restores every recorded field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import installer as installer_steps
from istio_upgrade.activities import sail
from istio_upgrade.activities.kube_client import Kube
from istio_upgrade.models.activities import BundleCheckInput, InstallInput
from istio_upgrade.models.spec import ClusterRef, InstallerSpec
from tests.integration.upgrade_stack import sandbox_kube

pytestmark = pytest.mark.slow

OLD, NEW = "default-v1-30-3", "default-v1-31-0"
CLUSTER = ClusterRef(name="demo", context="sandbox")


def installer(prune: str = "delete") -> InstallerSpec:
    return InstallerSpec.model_validate({"strategy": "sail", "sail": {"prune": prune}})


async def started(sandbox_factory: Any, tmp_path: Path) -> tuple[Any, Kube]:
    path = tmp_path / "sail-steps.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "extends": "sail",
                "name": "sail-steps",
                "sail": {"istio": "default", "version": "v1.30.3", "tags": ["default"],
                         "cni": True},
            }
        )
    )  # fmt: skip
    sandbox = await sandbox_factory(path)
    return sandbox, sandbox_kube(sandbox)


def until(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def get(kube: Kube, kind: str, name: str = "default") -> dict[str, Any]:
    found = kube.get_or_none(sail.API, kind, name)
    assert found is not None, (kind, name)
    return found


def install_input(version: str = "1.31.0") -> InstallInput:
    return InstallInput(
        cluster=CLUSTER, version=version, revision=NEW, installer=installer(), upgrade_id="u1"
    )


async def test_ambient_components_more_than_one_minor_behind_are_refused(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    _sandbox, kube = await started(sandbox_factory, tmp_path)

    def check(version: str) -> list[str]:
        spec = BundleCheckInput(
            cluster=CLUSTER, version=version, revision="x", installer=installer()
        )
        return sail.check(kube, spec).problems

    assert check("1.31.0") == []
    problems = check("1.32.2")
    assert problems == [
        "IstioCNI/default is at v1.30.3: ambient components support a control plane one "
        "minor ahead only; upgrade to 1.31 first"
    ]
    assert check("1.30.3") == ["Istio/default is already at v1.30.3: there is nothing to upgrade"]
    assert "a downgrade" in check("1.29.0")[0]


async def test_install_promote_and_rollback_restore_every_recorded_field(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    _sandbox, kube = await started(sandbox_factory, tmp_path)
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ztunnel"}})
    kube.create(
        {"apiVersion": sail.API, "kind": "ZTunnel", "metadata": {"name": "default"},
         "spec": {"version": "v1.30.3", "targetRef": {"kind": "Istio", "name": "default"}}}
    )  # fmt: skip
    before_spec = get(kube, "Istio")["spec"]

    def run() -> None:
        first = sail.install(kube, install_input())
        assert first.applied == [
            f"IstioRevisionTag/default pinned to IstioRevision/{OLD}",
            "Istio/default spec.version v1.31.0",
        ]
        record = get(kube, "Istio")["metadata"]["annotations"][sail.ANNOTATION_BEFORE]
        # A second attempt (a retry, another worker) keeps the first record.
        sail.install(kube, install_input())
        after = get(kube, "Istio")
        assert after["metadata"]["annotations"][sail.ANNOTATION_BEFORE] == record
        assert after["spec"]["version"] == "v1.31.0"
        tag = get(kube, "IstioRevisionTag")
        assert tag["spec"]["targetRef"] == {"kind": "IstioRevision", "name": OLD}
        sail.wait_ready(kube, installer(), NEW, 60, time.time(), lambda _: None)
        # The pinned tag stays on the old revision while the Istio's active one is new.
        until(lambda: get(kube, "Istio")["status"].get("activeRevisionName") == NEW, "active")
        assert get(kube, "IstioRevisionTag")["status"]["istioRevision"] == OLD

        # Promote: the tag follows the Istio again; CNI and ztunnel are upgraded after it.
        moved = sail.move_tags(kube, installer(), ["default"], NEW, None, lambda: None)
        assert moved.previous == {"default": OLD}
        assert get(kube, "IstioRevisionTag")["spec"]["targetRef"] == {
            "kind": "Istio",
            "name": "default",
        }
        assert get(kube, "IstioCNI")["spec"]["version"] == "v1.31.0"
        assert get(kube, "ZTunnel")["spec"]["version"] == "v1.31.0"

        # Rollback: tags pinned back, ambient components first restored, then the Istio.
        back = sail.move_tags(kube, installer(), ["default"], OLD, None, lambda: None)
        assert back.previous == {"default": NEW}
        assert get(kube, "IstioCNI")["spec"]["version"] == "v1.30.3"
        assert get(kube, "ZTunnel")["spec"]["version"] == "v1.30.3"
        assert get(kube, "IstioRevisionTag")["status"]["istioRevision"] == OLD
        removed = sail.uninstall(kube, installer(), NEW, lambda: None)
        assert f"IstioRevision/{NEW}" in removed.deleted
        istio = get(kube, "Istio")
        assert istio["spec"] == before_spec
        assert sail.ANNOTATION_BEFORE not in (istio["metadata"].get("annotations") or {})
        assert get(kube, "IstioRevisionTag")["spec"]["targetRef"] == {
            "kind": "Istio",
            "name": "default",
        }
        assert kube.get_or_none(sail.API, "IstioRevision", NEW) is None
        until(lambda: get(kube, "Istio")["status"].get("activeRevisionName") == OLD, "old")
        until(
            lambda: get(kube, "IstioRevisionTag")["status"].get("istioRevision") == OLD,
            "the tag on the old revision",
        )
        # Uninstalling again finds nothing left to do.
        again = sail.uninstall(kube, installer(), NEW, lambda: None)
        assert again.missing == [f"IstioRevision/{NEW}"] and not again.deleted

    await asyncio.to_thread(run)


async def test_the_manifests_uninstall_refuses_a_revision_sail_renders(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    _sandbox, kube = await started(sandbox_factory, tmp_path)

    def run() -> None:
        with pytest.raises(ApplicationError) as refused:
            installer_steps.uninstall(kube, OLD)
        assert refused.value.type == "OperatorManaged"
        assert f"kubectl delete istiorevision {OLD}" in refused.value.message
        assert kube.get_or_none("apps/v1", "Deployment", f"istiod-{OLD}", "istio-system")
        assert kube.get_or_none(sail.API, "IstioRevision", OLD) is not None

    await asyncio.to_thread(run)
