"""Moving ``default`` does what ``istioctl tag set default`` does, and a rollback undoes it exactly.

Against the sandbox's HTTP API, with a revisionless install written from upstream's charts
(the sandbox's own rendering, not the product's) beside the demo's revisioned one.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from istio_sandbox.istio.charts import render_default_validator, render_istiod, render_tag
from istio_upgrade.activities import installer
from istio_upgrade.activities.default_tag import BACKUP_CONFIGMAP, NEVER_MATCH
from istio_upgrade.activities.kube_client import Kube
from istio_upgrade.istio.manifests import render_bundle_yaml, render_revision
from istio_upgrade.models import ClusterRef, InstallInput
from tests.integration.upgrade_stack import sandbox_kube

MWC = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
VWC = ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
# Fields istiod's webhook controller owns at run time; istioctl keeps their live values too.
RUNTIME_FIELDS = ("failurePolicy", "caBundle")


@pytest.fixture
async def sandbox(sandbox_factory: Any) -> Any:
    box = await sandbox_factory("demo")
    yield box
    await asyncio.to_thread(box.stop)


def apply_all(kube: Kube, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kube.apply(obj)


def webhooks(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhooks without the fields istiod manages."""
    hooks = copy.deepcopy(obj.get("webhooks") or [])
    for hook in hooks:
        for key in RUNTIME_FIELDS:
            hook.pop(key, None)
        hook.get("clientConfig", {}).pop("caBundle", None)
    return hooks


def snapshot(kube: Kube) -> dict[str, Any]:
    legacy = kube.get(*MWC, "istio-sidecar-injector")
    validator = kube.get(*VWC, "istiod-default-validator")
    return {
        "legacy": webhooks(legacy),
        "validator": webhooks(validator),
        "validator_rev": validator["metadata"]["labels"]["istio.io/rev"],
    }


@pytest.fixture
def revisionless(sandbox: Any) -> Kube:
    """The demo cluster plus a revisionless istiod with the base chart's default validator,
    and the target revision 1-31-0 installed."""
    kube = sandbox_kube(sandbox)
    apply_all(kube, render_istiod("1.29.3", ""))
    kube.apply(render_default_validator("default"))
    apply_all(kube, render_revision("1.31.0", "1-31-0"))
    return kube


def test_moving_default_deactivates_the_revisionless_injector_and_repoints_the_validator(
    revisionless: Kube,
) -> None:
    kube = revisionless
    before = snapshot(kube)
    assert installer.revision_unused(kube, "default").blockers, "the validator calls istiod"
    assert any(
        "istiod-default-validator" in b for b in installer.revision_unused(kube, "default").blockers
    )

    result = installer.move_tags(kube, ["default"], "1-31-0")
    assert result.previous == {"default": "1-30-3"}
    legacy = kube.get(*MWC, "istio-sidecar-injector")
    assert legacy["webhooks"], "deactivated, not deleted (istioctl keeps it)"
    for hook in legacy["webhooks"]:
        assert hook["namespaceSelector"] == NEVER_MATCH
        assert hook["objectSelector"] == NEVER_MATCH
    validator = kube.get(*VWC, "istiod-default-validator")
    assert [h["clientConfig"]["service"]["name"] for h in validator["webhooks"]] == [
        "istiod-1-31-0"
    ]
    assert validator["metadata"]["labels"]["istio.io/rev"] == "1-31-0"
    assert not any(
        "istiod-default-validator" in b for b in installer.revision_unused(kube, "default").blockers
    )

    # A retried move changes nothing and keeps the original record.
    installer.move_tags(kube, ["default"], "1-31-0")
    record = kube.get("v1", "ConfigMap", BACKUP_CONFIGMAP, "istio-system")["data"]["record"]
    assert '"previous_revision": "1-30-3"' in record

    # Rollback: the tag goes back to where it was, and both objects return exactly.
    installer.move_tags(kube, ["default"], "1-30-3")
    assert snapshot(kube) == before
    assert kube.get_or_none("v1", "ConfigMap", BACKUP_CONFIGMAP, "istio-system") is None


def test_a_tag_that_did_not_exist_is_removed_and_the_revisionless_install_restored(
    revisionless: Kube,
) -> None:
    kube = revisionless
    kube.delete(*MWC, "istio-revision-tag-default")
    kube.delete("v1", "Service", "istiod-revision-tag-default", "istio-system")
    before = snapshot(kube)
    result = installer.move_tags(kube, ["default"], "1-31-0")
    assert result.previous == {"default": None}
    assert kube.get(*MWC, "istio-sidecar-injector")["webhooks"][0]["objectSelector"] == NEVER_MATCH
    installer.move_tags(kube, ["default"], None)
    assert kube.get_or_none(*MWC, "istio-revision-tag-default") is None
    assert snapshot(kube) == before


def test_revisionless_uninstall_uses_the_charts_names(revisionless: Kube) -> None:
    kube = revisionless
    result = installer.uninstall(kube, "default")
    assert not result.from_inventory
    deleted = set(result.deleted)
    assert {
        "MutatingWebhookConfiguration/istio-sidecar-injector",
        "ValidatingWebhookConfiguration/istio-validator-istio-system",
        "Deployment/istio-system/istiod",
        "Service/istio-system/istiod",
        "ConfigMap/istio-system/istio",
        "ConfigMap/istio-system/istio-sidecar-injector",
    } <= deleted, result
    assert not [m for m in result.missing if "default" in m], result.missing
    assert kube.get_or_none(*MWC, "istio-sidecar-injector") is None


def writes(sandbox: Any) -> int:
    stats = httpx.get(f"{sandbox.url}/sandbox/stats", timeout=10).json()
    return int(stats["writes"])


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "virtualservices.networking.istio.io"}, "spec": {}},
            "CustomResourceDefinition/virtualservices.networking.istio.io",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                          "labels": {"istio": "ingressgateway", "istio.io/rev": "1-31-0"}},
             "spec": {}},
            "Deployment/istio-system/istio-ingressgateway",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "istio-1-30-3", "namespace": "istio-system",
                          "labels": {"istio.io/rev": "1-30-3"}}},
            "ConfigMap/istio-system/istio-1-30-3",
        ),
    ],
    ids=["crd", "gateway", "other-revision"],
)  # fmt: skip
def test_a_bundle_with_foreign_objects_is_refused_with_zero_writes(
    sandbox: Any, extra: dict[str, Any], named: str
) -> None:
    kube = sandbox_kube(sandbox)
    bundle = render_bundle_yaml([*render_revision("1.31.0", "1-31-0"), extra])
    spec = InstallInput(
        cluster=ClusterRef(name="demo", context="demo"),
        version="1.31.0",
        revision="1-31-0",
        upgrade_id="t",
        installer={"bundle_yaml": bundle},
    )
    before = writes(sandbox)
    with pytest.raises(ApplicationError) as info:
        installer.install(kube, spec)
    assert info.value.type == "InvalidManifest" and info.value.non_retryable
    assert named in info.value.message and "nothing was applied" in info.value.message
    assert writes(sandbox) == before
    assert kube.get_or_none("apps/v1", "Deployment", "istiod-1-31-0", "istio-system") is None


def test_a_move_retried_after_the_tag_moved_still_restores_exactly(revisionless: Kube) -> None:
    kube = revisionless
    before = snapshot(kube)
    original = {"default": "1-30-3"}
    # A first attempt got as far as the tag's own webhook, then failed (API error, a worker
    # crash): the live tag already names the target when the retry reads it.
    for obj in render_tag("default", "1-31-0"):
        kube.apply(obj)
    installer.move_tags(kube, ["default"], "1-31-0", original)
    record = kube.get("v1", "ConfigMap", BACKUP_CONFIGMAP, "istio-system")["data"]["record"]
    assert '"previous_revision": "1-30-3"' in record, "the revision the workflow knew"
    installer.move_tags(kube, ["default"], "1-30-3", original)
    assert snapshot(kube) == before
    # A restore retried after it already ran changes nothing (and deactivates nothing).
    installer.move_tags(kube, ["default"], "1-30-3", original)
    assert snapshot(kube) == before
