"""Small hand-built inventories for the pure planning tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from istio_upgrade.istio.manifests import render_revision, render_tag
from istio_upgrade.istio.support import SUPPORT
from istio_upgrade.models import (
    ClusterInventory,
    NamespaceInfo,
    PodInfo,
    RevisionInfo,
    SupportData,
    UpgradeSpec,
    WebhookInfo,
    WorkloadInfo,
)
from istio_upgrade.planning import effective_revision


def webhooks_of(objects: list[dict[str, Any]]) -> list[WebhookInfo]:
    """The injector webhooks among rendered objects, as discovery records them."""
    hooks: list[WebhookInfo] = []
    for obj in objects:
        if obj["kind"] != "MutatingWebhookConfiguration":
            continue
        labels = obj["metadata"].get("labels", {})
        for hook in obj["webhooks"]:
            hooks.append(
                WebhookInfo(
                    configuration=obj["metadata"]["name"],
                    name=hook["name"],
                    revision=labels.get("istio.io/rev"),
                    tag=labels.get("istio.io/tag"),
                    namespace_selector=hook.get("namespaceSelector") or {},
                    object_selector=hook.get("objectSelector") or {},
                )
            )
    return hooks


def deployment(name: str, revision: str | None, replicas: int = 2, **pod: Any) -> WorkloadInfo:
    workload = WorkloadInfo(kind="Deployment", name=name, restartable=True)
    for i in range(replicas):
        workload.add_pod(
            PodInfo(
                name=f"{name}-{i}",
                phase="Running",
                ready=True,
                injected_revision=revision,
                **pod,
            )
        )
    return workload


def inventory(
    namespaces: dict[str, dict[str, str]],
    *,
    source: str = "1-30-3",
    source_version: str = "1.30.3",
    tags: dict[str, str] | None = None,
    extra_revisions: list[RevisionInfo] | None = None,
    gateways: tuple[str, ...] = (),
    workloads: dict[str, list[WorkloadInfo]] | None = None,
    extra_webhooks: list[WebhookInfo] | None = None,
) -> ClusterInventory:
    """An inventory with one installed revision, its tags and the given namespaces."""
    tags = {"default": source} if tags is None else tags
    objects = list(render_revision(source_version, source))
    for tag, rev in tags.items():
        objects += render_tag(tag, rev)
    hooks = webhooks_of(objects) + (extra_webhooks or [])
    infos = []
    for name, labels in namespaces.items():
        eff = effective_revision(labels, hooks, tags)
        loads = (workloads or {}).get(name) or [deployment("app", eff, gateway=name in gateways)]
        infos.append(
            NamespaceInfo(name=name, labels=labels, effective_revision=eff, workloads=loads)
        )
    return ClusterInventory(
        cluster="c1",
        discovered_at=datetime(2026, 1, 1, tzinfo=UTC),
        revisions=[
            RevisionInfo(name=source, version=source_version, ready=True),
            *(extra_revisions or []),
        ],
        tags=tags,
        webhooks=hooks,
        namespaces=infos,
        support=SupportData(
            canary_max_minor_jump=SUPPORT.canary_max_minor_jump,
            ambient_max_minor_jump=SUPPORT.ambient_max_minor_jump,
            kubernetes={m: list(v) for m, v in SUPPORT.kubernetes.items()},
        ),
    )


def spec(**overrides: Any) -> UpgradeSpec:
    doc: dict[str, Any] = {"cluster": {"name": "c1"}, "target": {"version": "1.31.0"}}
    doc.update(overrides)
    return UpgradeSpec.model_validate(doc)


ENABLED = {"istio-injection": "enabled"}
REV = {"istio.io/rev": "1-30-3"}
