"""The ``sail`` installer: the Sail Operator installs revisions from an ``Istio`` resource.

The upgrade changes the ``Istio`` resource (``sailoperator.io/v1``, ``RevisionBased``) and the
``IstioRevisionTag``s; the operator renders the revisions. Behaviour read from sail-operator:

- ``controllers/istio/istio_controller.go`` (``getActiveRevisionName``): the active revision is
  ``<istio>-<spec.version with dots as dashes>`` (``default-v1-31-0``) and
  ``status.activeRevisionName`` follows ``spec.version`` at the next reconcile;
- ``pkg/revision/references.go`` (``GetIstioRevisionFromTargetReference``): a tag whose
  ``targetRef`` is the ``Istio`` follows that active revision, so tags are pinned to the old
  ``IstioRevision`` before the version changes, and given back to the ``Istio`` at promote;
- ``pkg/revision/prune.go`` (``PruneInactive``): a non-active revision whose ``InUse`` condition
  is ``False`` is deleted once ``inactiveRevisionDeletionGracePeriodSeconds`` (default 30)
  passed since that condition changed.

What the upgrade changes is recorded first in an annotation of the ``Istio`` resource (its
version, the tags' targets, the ``IstioCNI``/``ZTunnel`` versions), so a rollback restores them
exactly, from any worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from temporalio.exceptions import ApplicationError

from istio_upgrade.activities.discovery import ANNOTATION_UPGRADE_ID
from istio_upgrade.activities.kube_client import Kube, Obj
from istio_upgrade.istio.naming import parse_version
from istio_upgrade.models.activities import (
    BundleCheckInput,
    BundleCheckResult,
    InstallInput,
    InstallResult,
    MoveTagsResult,
    UninstallResult,
)
from istio_upgrade.models.spec import InstallerSpec, SailSpec, sail_version

API = "sailoperator.io/v1"
ISTIO = (API, "Istio")
REVISION = (API, "IstioRevision")
TAG = (API, "IstioRevisionTag")
AMBIENT = ((API, "IstioCNI"), (API, "ZTunnel"))
"""Upgraded in place, after the control plane (istio.io: istiod, then istio-cni, then
ztunnel), and at most one minor behind it."""
ANNOTATION_BEFORE = "istio-upgrade.io/sail-before"
"""On the ``Istio`` resource: JSON of what the upgrade changes, as it was before."""
AMBIENT_MAX_MINOR_JUMP = 1


def _refused(message: str, kind: str = "SailRefused") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def _minor(version: str) -> tuple[int, int] | None:
    try:
        parsed = parse_version(version.lstrip("v"))
    except ValueError:
        return None
    return parsed[0], parsed[1]


def _get(kube: Kube, ref: tuple[str, str], name: str) -> Obj | None:
    """The object, or None when it (or its API) does not exist."""
    try:
        return kube.get_or_none(*ref, name)
    except ApplicationError as error:
        if error.type == "UnknownKind":
            return None
        raise


def _list(kube: Kube, ref: tuple[str, str]) -> list[Obj]:
    try:
        return list(kube.list(*ref))
    except ApplicationError as error:
        if error.type == "UnknownKind":
            return []
        raise


def _condition(obj: Obj | None, kind: str) -> dict[str, Any]:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def active_revision(istio: Obj, sail: SailSpec) -> str:
    """The revision the ``Istio`` resource's ``spec.version`` names (the operator's rule)."""
    return sail.revision_name(str((istio.get("spec") or {}).get("version") or ""))


def istio_problems(istio: Obj | None, sail: SailSpec, version: str) -> list[str]:
    """Why the ``Istio`` resource cannot be upgraded to ``version`` (empty: it can)."""
    name = f"Istio/{sail.istio}"
    if istio is None:
        return [
            f"installer.sail.istio: {name} (sailoperator.io/v1) does not exist in the cluster; "
            "name the Istio resource the Sail Operator manages, or install the operator"
        ]
    spec = istio.get("spec") or {}
    strategy = (spec.get("updateStrategy") or {}).get("type") or "InPlace"
    if strategy != "RevisionBased":
        return [
            f"installer.sail.istio: {name} has updateStrategy.type {strategy}; a canary "
            "upgrade needs RevisionBased (set spec.updateStrategy.type: RevisionBased, which "
            "keeps the old revision beside the new one)"
        ]
    problems = []
    current = str(spec.get("version") or "")
    if current == sail_version(version) and ANNOTATION_BEFORE not in _annotations(istio):
        problems.append(f"{name} is already at {current}: there is nothing to upgrade")
    target_minor, current_minor = _minor(version), _minor(current)
    if target_minor and current_minor and target_minor < current_minor:
        problems.append(
            f"{name} is at {current}, newer than the target {version}; a downgrade is not a "
            "canary upgrade"
        )
    return problems


def ambient_problems(kube: Kube, version: str, before: dict[str, str] | None = None) -> list[str]:
    """IstioCNI/ZTunnel resources more than one minor behind the target (istio.io's ambient
    upgrade procedure: one minor at a time)."""
    problems = []
    target = _minor(version)
    for ref in AMBIENT:
        for obj in _list(kube, ref):
            name = f"{ref[1]}/{obj['metadata']['name']}"
            current = (before or {}).get(name) or str((obj.get("spec") or {}).get("version", ""))
            have = _minor(current)
            if target and have and target[0] == have[0] and target[1] - have[1] > 1:
                problems.append(
                    f"{name} is at {current}: ambient components support a control plane one "
                    f"minor ahead only; upgrade to {have[0]}.{have[1] + 1} first"
                )
    return problems


def check(kube: Kube, spec: BundleCheckInput) -> BundleCheckResult:
    """The precheck of a ``sail`` upgrade, writing nothing: the ``Istio`` resource exists, is
    ``RevisionBased`` and below the target; ambient components are within one minor."""
    sail = spec.installer.sail_settings
    istio = _get(kube, ISTIO, sail.istio)
    result = BundleCheckResult(problems=istio_problems(istio, sail, spec.version))
    if not result.problems:
        result.problems += ambient_problems(kube, spec.version, _before(istio or {}).get("ambient"))
    return result


def _annotations(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _before(istio: Obj) -> dict[str, Any]:
    text = _annotations(istio).get(ANNOTATION_BEFORE)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise _refused(
            f"Istio/{istio['metadata']['name']} annotation {ANNOTATION_BEFORE} is not JSON; "
            "restore it or remove it by hand"
        ) from None
    return dict(data) if isinstance(data, dict) else {}


def _istio(kube: Kube, sail: SailSpec, version: str) -> Obj:
    istio = _get(kube, ISTIO, sail.istio)
    problems = istio_problems(istio, sail, version)
    if problems or istio is None:
        raise _refused("; ".join(problems))
    return istio


def _target_ref(tag: Obj) -> dict[str, str]:
    ref = (tag.get("spec") or {}).get("targetRef") or {}
    return {"kind": str(ref.get("kind", "")), "name": str(ref.get("name", ""))}


def _set_target(kube: Kube, name: str, ref: dict[str, str]) -> None:
    kube.merge_patch(*TAG, name, {"spec": {"targetRef": ref}})


def install(kube: Kube, spec: InstallInput) -> InstallResult:
    """Record the state before, pin the tags that follow the ``Istio`` to its current revision,
    then set its ``spec.version``: the operator creates the new ``IstioRevision``.

    Idempotent: a second run finds the record and the version already set.
    """
    sail = spec.installer.sail_settings
    istio = _istio(kube, sail, spec.version)
    before = _before(istio)
    if before.get(ANNOTATION_UPGRADE_ID) != spec.upgrade_id:
        # None, or left by an earlier upgrade that kept its old revision (no cleanup ran):
        # this upgrade records the state it starts from.
        before = {}
    if not before:
        old = active_revision(istio, sail)
        before = {
            ANNOTATION_UPGRADE_ID: spec.upgrade_id,
            "version": (istio.get("spec") or {}).get("version"),
            "revision": old,
            "tags": {t["metadata"]["name"]: _target_ref(t) for t in _list(kube, TAG)},
            "ambient": {
                f"{ref[1]}/{o['metadata']['name']}": (o.get("spec") or {}).get("version")
                for ref in AMBIENT
                for o in _list(kube, ref)
            },
        }
        kube.merge_patch(
            *ISTIO,
            sail.istio,
            {"metadata": {"annotations": {ANNOTATION_BEFORE: json.dumps(before, sort_keys=True)}}},
        )
    applied = []
    for name, ref in sorted((before.get("tags") or {}).items()):
        if ref == {"kind": "Istio", "name": sail.istio}:
            _set_target(kube, name, {"kind": "IstioRevision", "name": before["revision"]})
            applied.append(f"IstioRevisionTag/{name} pinned to IstioRevision/{before['revision']}")
    kube.merge_patch(*ISTIO, sail.istio, {"spec": {"version": sail_version(spec.version)}})
    applied.append(f"Istio/{sail.istio} spec.version {sail_version(spec.version)}")
    return InstallResult(applied=applied, inventory_configmap="")


def wait_ready(
    kube: Kube,
    installer: InstallerSpec,
    revision: str,
    timeout_seconds: float,
    started: float,
    heartbeat: Callable[[float], None],
) -> None:
    """Poll ``IstioRevision/<revision>`` until its ``Ready`` condition is ``True``.

    Raises:
        ApplicationError: ``RevisionNotReady`` (non-retryable) at the deadline, with its status.
    """
    last = "not found"
    while True:
        rev = _get(kube, REVISION, revision)
        if rev is not None:
            ready = _condition(rev, "Ready")
            if ready.get("status") == "True":
                return
            last = f"Ready {ready.get('status', 'Unknown')}: {ready.get('message') or ''}".strip()
        heartbeat(started)
        if time.time() - started >= timeout_seconds:
            raise ApplicationError(
                f"IstioRevision/{revision} is not Ready after {timeout_seconds:g}s ({last}); "
                f"check it and the Sail Operator's log (kubectl describe istiorevision "
                f"{revision})",
                type="RevisionNotReady",
                non_retryable=True,
            )
        time.sleep(1.0)


def _wait_tags(
    kube: Kube, wanted: dict[str, str], tick: Callable[[], None], timeout: float = 120.0
) -> None:
    """Until each tag's ``status.istioRevision`` is its wanted revision (the operator moved
    its webhook), or the deadline."""
    deadline = time.time() + timeout
    while True:
        late = {
            name: rev
            for name, rev in wanted.items()
            if ((_get(kube, TAG, name) or {}).get("status") or {}).get("istioRevision") != rev
        }
        if not late:
            return
        tick()
        if time.time() >= deadline:
            raise ApplicationError(
                "the Sail Operator did not move IstioRevisionTag(s) "
                + ", ".join(f"{n} to {r}" for n, r in sorted(late.items()))
                + f" within {timeout:g}s; check the tags' status and the operator's log",
                type="TagNotMoved",
            )
        time.sleep(0.5)


def _set_ambient(kube: Kube, versions: dict[str, str | None], applied: list[str]) -> None:
    for ref in AMBIENT:
        for obj in _list(kube, ref):
            name = obj["metadata"]["name"]
            want = versions.get(f"{ref[1]}/{name}")
            if want and (obj.get("spec") or {}).get("version") != want:
                kube.merge_patch(*ref, name, {"spec": {"version": want}})
                applied.append(f"{ref[1]}/{name} spec.version {want}")


def move_tags(
    kube: Kube,
    installer: InstallerSpec,
    tags: list[str],
    revision: str | None,
    original: dict[str, str | None] | None,
    tick: Callable[[], None],
) -> MoveTagsResult:
    """Point ``IstioRevisionTag``s at ``revision`` (delete them when None).

    Moving to the ``Istio`` resource's active revision (promote) gives back to the ``Istio``
    the tags that followed it before the upgrade, pins the others to the ``IstioRevision``,
    and then upgrades ``IstioCNI``/``ZTunnel`` to the ``Istio`` version (after the control
    plane, as istio.io's ambient procedure orders). Moving elsewhere (a rollback) pins them
    to that revision and restores the ambient components first.
    """
    sail = installer.sail_settings
    istio = _get(kube, ISTIO, sail.istio) or {}
    before = _before(istio)
    forward = revision is not None and revision == active_revision(istio, sail)
    result = MoveTagsResult()
    if not forward:
        _set_ambient(kube, before.get("ambient") or {}, result.applied)
    wanted: dict[str, str] = {}
    for name in tags:
        current = _get(kube, TAG, name)
        result.previous[name] = (
            ((current.get("status") or {}).get("istioRevision") or None) if current else None
        )
        if revision is None:
            if current is not None:
                kube.delete(*TAG, name)
            result.applied.append(f"IstioRevisionTag/{name} removed")
            continue
        recorded = (before.get("tags") or {}).get(name)
        follows_istio = recorded == {"kind": "Istio", "name": sail.istio}
        ref = (
            {"kind": "Istio", "name": sail.istio}
            if forward and follows_istio
            else {"kind": "IstioRevision", "name": revision}
        )
        if current is None:
            kube.create(
                {"apiVersion": API, "kind": "IstioRevisionTag", "metadata": {"name": name},
                 "spec": {"targetRef": ref}}
            )  # fmt: skip
        elif _target_ref(current) != ref:
            _set_target(kube, name, ref)
        wanted[name] = revision
        result.applied.append(f"IstioRevisionTag/{name} → {ref['kind']}/{ref['name']}")
    _wait_tags(kube, wanted, tick)
    if forward:
        version = str((istio.get("spec") or {}).get("version") or "")
        _set_ambient(
            kube,
            {key: version for key in (before.get("ambient") or {})},
            result.applied,
        )
    del original  # the record on the Istio resource is the reference under Sail
    return result


def uninstall(
    kube: Kube, installer: InstallerSpec, revision: str, tick: Callable[[], None]
) -> UninstallResult:
    """Remove a revision the upgrade leaves inactive.

    For the target (a rollback): the ``Istio`` resource's version, the tags' targets and the
    ambient components' versions are restored from the record first. For the old revision
    (after promotion) the record is dropped. Then the revision goes: deleted when
    ``prune: delete``, else awaited until the operator prunes it (``PruneInactive``).
    """
    sail = installer.sail_settings
    istio = _get(kube, ISTIO, sail.istio)
    before = _before(istio) if istio is not None else {}
    result = UninstallResult()
    if before and revision != before.get("revision"):
        _set_ambient(kube, before.get("ambient") or {}, result.deleted)
        if before.get("version"):
            kube.merge_patch(*ISTIO, sail.istio, {"spec": {"version": before["version"]}})
            result.deleted.append(f"Istio/{sail.istio} spec.version back to {before['version']}")
        for name, ref in sorted((before.get("tags") or {}).items()):
            tag = _get(kube, TAG, name)
            if tag is not None and _target_ref(tag) != ref:
                _set_target(kube, name, ref)
                result.deleted.append(
                    f"IstioRevisionTag/{name} back to {ref['kind']}/{ref['name']}"
                )
    if before:
        kube.merge_patch(
            *ISTIO, sail.istio, {"metadata": {"annotations": {ANNOTATION_BEFORE: None}}}
        )
    _prune(kube, sail, revision, tick, result)
    return result


def _prune(
    kube: Kube, sail: SailSpec, revision: str, tick: Callable[[], None], result: UninstallResult
) -> None:
    if _get(kube, REVISION, revision) is None:
        result.missing.append(f"IstioRevision/{revision}")
        return
    if sail.prune == "delete":
        kube.delete(*REVISION, revision)
        result.deleted.append(f"IstioRevision/{revision}")
        return
    deadline = time.time() + sail.prune_timeout_seconds
    while _get(kube, REVISION, revision) is not None:
        tick()
        if time.time() >= deadline:
            in_use = _condition(_get(kube, REVISION, revision), "InUse")
            raise ApplicationError(
                f"the Sail Operator did not prune IstioRevision/{revision} within "
                f"{sail.prune_timeout_seconds:g}s (InUse {in_use.get('status', 'Unknown')}: "
                f"{in_use.get('message') or in_use.get('reason') or 'no condition'}); it prunes "
                "an unused inactive revision after inactiveRevisionDeletionGracePeriodSeconds, "
                "or set installer.sail.prune: delete",
                type="RevisionNotPruned",
                non_retryable=True,
            )
        time.sleep(1.0)
    result.deleted.append(f"IstioRevision/{revision} (pruned by the Sail Operator)")
