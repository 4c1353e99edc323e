"""What moving the ``default`` tag also changes, done as ``istioctl tag set default`` does it.

``istioctl/pkg/tag/generate.go`` (``Generate`` with tag ``default``) does two things beyond the
tag's own webhook: ``DeactivateIstioInjectionWebhook`` (``util.go``) gives every webhook of the
revisionless injector (``istio.io/rev=default`` and no ``istio.io/tag``) the never-matching
selectors of ``util.NeverMatch``, so it no longer overlaps the tag; and it regenerates the base
chart's ``istiod-default-validator`` for the tag's revision, keeping the live failurePolicy
(``fixWhConfig``) and caBundle. Without the first, pods of ``istio-injection=enabled``
namespaces are still injected by the old istiod (or refused once it is gone); without the
second, every create of an Istio resource is refused once the old istiod is removed.

A rollback must restore both exactly, so the first move of ``default`` records what it changes
in the ConfigMap ``istio-upgrade-default-tag-backup`` (selectors, the validator's Service and
``istio.io/rev`` label; never runtime fields istiod owns, such as ``caBundle`` and
``failurePolicy``). Moving ``default`` back to the revision recorded there, or deleting the
tag, puts them back and removes the record. The record is written before the tag
moves and holds the revision the workflow knew the tag named, so a retried or continued move
never records an already-moved state; both directions are "make it so".
"""

from __future__ import annotations

import json
from typing import Any

from istio_upgrade.activities.discovery import LABEL_MANAGED_BY, MANAGER
from istio_upgrade.activities.kube_client import Kube, Obj
from istio_upgrade.istio.naming import (
    DEFAULT_TAG,
    DEFAULT_VALIDATOR,
    ISTIO_NAMESPACE,
    LABEL_DEACTIVATED,
    LABEL_REV,
    LABEL_TAG,
    istiod_name,
    tag_webhook_name,
)

BACKUP_CONFIGMAP = "istio-upgrade-default-tag-backup"
NEVER_MATCH: dict[str, Any] = {"matchLabels": {LABEL_DEACTIVATED: "never-match"}}
_ADMISSION = "admissionregistration.k8s.io/v1"
_MWC = (_ADMISSION, "MutatingWebhookConfiguration")
_VWC = (_ADMISSION, "ValidatingWebhookConfiguration")


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def legacy_injectors(kube: Kube) -> list[Obj]:
    """The revisionless injector configurations (``GetWebhooksWithRevision(ctx, c, "default")``)."""
    return list(kube.list(*_MWC, label_selector=f"{LABEL_REV}={DEFAULT_TAG},!{LABEL_TAG}"))


def _validators(kube: Kube, tag: str) -> list[Obj]:
    """``istiod-default-validator``, and the tag's own validator where the charts render one."""
    names = [DEFAULT_VALIDATOR] if tag == DEFAULT_TAG else []
    names.append(tag_webhook_name(tag))
    found = (kube.get_or_none(*_VWC, name) for name in names)
    return [v for v in found if v is not None]


def _service_name(webhook: Obj) -> str | None:
    service = (webhook.get("clientConfig") or {}).get("service") or {}
    return service.get("name")


def _record(
    tag: str, previous: str | None, injectors: list[Obj], validators: list[Obj]
) -> dict[str, Any]:
    """The fields a move changes, as they are now."""
    return {
        "tag": tag,
        "previous_revision": previous,
        "injectors": {
            cfg["metadata"]["name"]: [
                {
                    "name": wh.get("name"),
                    "namespaceSelector": wh.get("namespaceSelector"),
                    "objectSelector": wh.get("objectSelector"),
                }
                for wh in cfg.get("webhooks") or []
            ]
            for cfg in injectors
        },
        "validators": {
            v["metadata"]["name"]: {
                "revision_label": _labels(v).get(LABEL_REV),
                "services": [_service_name(wh) for wh in v.get("webhooks") or []],
            }
            for v in validators
        },
    }


def _backup_name(tag: str) -> str:
    return BACKUP_CONFIGMAP if tag == DEFAULT_TAG else f"istio-upgrade-tag-{tag}-backup"


def _read_backup(kube: Kube, tag: str) -> dict[str, Any] | None:
    cm = kube.get_or_none("v1", "ConfigMap", _backup_name(tag), ISTIO_NAMESPACE)
    if cm is None:
        return None
    return dict(json.loads((cm.get("data") or {}).get("record", "{}")))


def _write_backup(kube: Kube, tag: str, record: dict[str, Any]) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": _backup_name(tag),
                "namespace": ISTIO_NAMESPACE,
                "labels": {LABEL_MANAGED_BY: MANAGER},
            },
            "data": {"record": json.dumps(record, indent=1, sort_keys=True)},
        }
    )


def _patch_webhooks(kube: Kube, kind: tuple[str, str], obj: Obj, webhooks: list[Obj]) -> None:
    kube.merge_patch(kind[0], kind[1], obj["metadata"]["name"], {"webhooks": webhooks})


def _point_validators(
    kube: Kube, tag: str, services: dict[str, list[str | None]], rev: dict[str, str | None]
) -> list[str]:
    changed: list[str] = []
    for v in _validators(kube, tag):
        name = v["metadata"]["name"]
        wanted = services.get(name)
        if wanted is None:
            continue
        hooks = [dict(wh) for wh in v.get("webhooks") or []]
        for index, wh in enumerate(hooks):
            target = wanted[min(index, len(wanted) - 1)] if wanted else None
            if target is None or _service_name(wh) == target:
                continue
            client = dict(wh.get("clientConfig") or {})
            client["service"] = {**(client.get("service") or {}), "name": target}
            wh["clientConfig"] = client
        label = rev.get(name)
        patch: Obj = {}
        if hooks != list(v.get("webhooks") or []):
            patch["webhooks"] = hooks
        if label is not None and _labels(v).get(LABEL_REV) != label:
            patch["metadata"] = {"labels": {LABEL_REV: label}}
        if patch:
            kube.merge_patch(*_VWC, name, patch)
            changed.append(
                f"ValidatingWebhookConfiguration/{name} → {', '.join(filter(None, wanted))}"
            )
    return changed


def moves_back(kube: Kube, tag: str, revision: str | None) -> bool:
    """Whether a record says ``tag`` named ``revision`` before the upgrade moved it."""
    record = _read_backup(kube, tag)
    return record is not None and record.get("previous_revision") == revision


def prepare(kube: Kube, tag: str, previous: str | None, *, known: bool = True) -> None:
    """Record, before the first write of a move of ``tag``, what :func:`follow` will change.

    Once per upgrade: a retried or continued move finds its record (same ``previous``, the
    revision the workflow knew the tag named — never re-read from a tag an earlier attempt may
    have moved already) and keeps it, so it always holds the state from before the upgrade. A
    record naming another previous revision is a finished upgrade's and is replaced.
    """
    record = _read_backup(kube, tag)
    if record is not None and (not known or record.get("previous_revision") == previous):
        return
    injectors = legacy_injectors(kube) if tag == DEFAULT_TAG else []
    validators = _validators(kube, tag)
    if injectors or validators:
        _write_backup(kube, tag, _record(tag, previous, injectors, validators))


def follow(kube: Kube, tag: str, revision: str) -> list[str]:
    """Make the objects that go with ``tag`` serve ``revision`` (after :func:`prepare`)."""
    injectors = legacy_injectors(kube) if tag == DEFAULT_TAG else []
    validators = _validators(kube, tag)
    if not injectors and not validators:
        return []
    changed: list[str] = []
    if injectors:
        for cfg in injectors:
            hooks = [dict(wh) for wh in cfg.get("webhooks") or []]
            if all(
                wh.get("namespaceSelector") == NEVER_MATCH
                and wh.get("objectSelector") == NEVER_MATCH
                for wh in hooks
            ):
                continue
            for wh in hooks:
                wh["namespaceSelector"] = NEVER_MATCH
                wh["objectSelector"] = NEVER_MATCH
            _patch_webhooks(kube, _MWC, cfg, hooks)
            changed.append(f"MutatingWebhookConfiguration/{cfg['metadata']['name']} deactivated")
    target = istiod_name(revision)
    changed += _point_validators(
        kube,
        tag,
        {v["metadata"]["name"]: [target] for v in validators},
        {v["metadata"]["name"]: revision for v in validators},
    )
    return changed


def restore(kube: Kube, tag: str, revision: str | None) -> list[str]:
    """Put back what :func:`follow` changed when ``tag`` returns to the recorded revision.

    ``revision`` None means the tag is being deleted (it did not exist before the upgrade).
    Returns what changed; nothing when there is no record or the tag goes elsewhere.
    """
    record = _read_backup(kube, tag)
    if record is None or record.get("previous_revision") != revision:
        return []
    changed: list[str] = []
    for name, saved in (record.get("injectors") or {}).items():
        cfg = kube.get_or_none(*_MWC, name)
        if cfg is None:
            continue
        by_name = {s.get("name"): s for s in saved}
        hooks = []
        for wh in cfg.get("webhooks") or []:
            original = by_name.get(wh.get("name"))
            wh = dict(wh)
            if original is not None:
                for key in ("namespaceSelector", "objectSelector"):
                    if original.get(key) is None:
                        wh.pop(key, None)
                    else:
                        wh[key] = original[key]
            hooks.append(wh)
        if hooks != list(cfg.get("webhooks") or []):
            _patch_webhooks(kube, _MWC, cfg, hooks)
            changed.append(f"MutatingWebhookConfiguration/{name} restored")
    saved_validators = record.get("validators") or {}
    changed += _point_validators(
        kube,
        tag,
        {name: list(v.get("services") or []) for name, v in saved_validators.items()},
        {name: v.get("revision_label") for name, v in saved_validators.items()},
    )
    kube.delete("v1", "ConfigMap", _backup_name(tag), ISTIO_NAMESPACE)
    return changed


def targets(kube: Kube, service: str) -> list[str]:
    """Every webhook configuration with a webhook that calls ``istio-system/<service>``."""
    found: list[str] = []
    for kind in (_MWC, _VWC):
        for cfg in kube.list(*kind):
            for wh in cfg.get("webhooks") or []:
                svc = (wh.get("clientConfig") or {}).get("service") or {}
                if (
                    svc.get("name") == service
                    and svc.get("namespace", ISTIO_NAMESPACE) == ISTIO_NAMESPACE
                ):
                    found.append(f"{kind[1]}/{cfg['metadata']['name']}")
                    break
    return found
