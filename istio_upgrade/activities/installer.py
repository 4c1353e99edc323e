"""The ``manifests`` installer: server-side apply of a revision bundle, recorded in an inventory.

The inventory ConfigMap ``istio-upgrade-inventory-<rev>`` lists every object applied, so
uninstalling deletes exactly what was installed — nothing the operator added by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from temporalio.exceptions import ApplicationError

from istio_upgrade.activities import default_tag
from istio_upgrade.activities.discovery import (
    ANNOTATION_UPGRADE_ID,
    LABEL_MANAGED_BY,
    MANAGER,
    deployment_available,
    injected_revision,
    inventory_configmap_name,
)
from istio_upgrade.activities.kube_client import Kube, NotFound, Obj
from istio_upgrade.istio.bundle import BundleSorting, sort_bundle
from istio_upgrade.istio.manifests import load_bundle_yaml, render_revision, render_tag
from istio_upgrade.istio.naming import (
    DEFAULT_TAG,
    ISTIO_NAMESPACE,
    LABEL_REV,
    LABEL_TAG,
    injector_webhook_name,
    istiod_name,
    mesh_configmap_name,
    tag_service_name,
    tag_webhook_name,
    validator_webhook_name,
)
from istio_upgrade.models.activities import (
    BundleCheckInput,
    BundleCheckResult,
    CrdsInput,
    CrdsResult,
    InstallInput,
    InstallResult,
    MoveTagsResult,
    UninstallResult,
    UnusedReport,
)
from istio_upgrade.models.spec import BundleSource, CRDSpec

_MWC = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidManifest", non_retryable=True)


def read_bundle(kube: Kube, source: BundleSource, field: str) -> list[Obj]:
    """The documents of a rendered bundle named by ``source`` (the spec's ``field``).

    Raises:
        ApplicationError: ``InvalidManifest``, naming the field, when the bundle cannot be read
            or a document is not a Kubernetes object.
    """
    try:
        if source.bundle_yaml is not None:
            objects = load_bundle_yaml(source.bundle_yaml)
        elif source.bundle_path is not None:
            path = Path(source.bundle_path)
            if not path.is_file():
                raise _invalid(
                    f"{field}.bundle_path {path} does not exist on the worker; "
                    f"mount the bundle or use {field}.bundle_configmap"
                )
            objects = load_bundle_yaml(path.read_text())
        elif source.bundle_configmap is not None:
            ref = source.bundle_configmap
            cm = kube.get_or_none("v1", "ConfigMap", ref.name, ref.namespace)
            text = ((cm or {}).get("data") or {}).get(ref.key)
            if text is None:
                raise _invalid(
                    f"{field}.bundle_configmap {ref.namespace}/{ref.name} has no key "
                    f"{ref.key!r}; create it with the rendered bundle"
                )
            objects = load_bundle_yaml(text)
        else:
            raise _invalid(f"{field}: name a bundle (bundle_path, bundle_configmap or bundle_yaml)")
    except ValueError as error:
        raise _invalid(f"{field} bundle: {error}") from None
    if not objects:
        raise _invalid(f"{field} bundle is empty; render it with helm template")
    for index, obj in enumerate(objects):
        if not obj.get("apiVersion") or not (obj.get("metadata") or {}).get("name"):
            raise _invalid(f"{field} bundle document {index} lacks apiVersion or metadata.name")
    return objects


def apply_crds(kube: Kube, spec: CrdsInput) -> CrdsResult:
    """Server-side apply the base chart's CRDs of the target version, before the revision.

    Only CustomResourceDefinitions of Istio's API groups (``*.istio.io``) are accepted; the
    bundle is refused whole, before any write, when it holds anything else. CRDs are never
    recorded in a revision's inventory, so no uninstall or rollback ever deletes one.
    """
    result = CrdsResult()
    for obj in checked_crds(kube, spec.crds, spec.version):
        kube.apply(obj)
        result.applied.append(f"CustomResourceDefinition/{obj['metadata']['name']}")
    return result


def checked_crds(kube: Kube, crds: CRDSpec, version: str) -> list[Obj]:
    """The CRDs named by ``crds``; any other object refuses the bundle (``InvalidManifest``)."""
    objects = read_bundle(kube, crds, "crds")
    foreign = [
        f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
        for o in objects
        if o.get("kind") != "CustomResourceDefinition"
        or not str(((o.get("spec") or {}).get("group")) or "").endswith(".istio.io")
    ]
    if foreign:
        raise _invalid(
            f"crds bundle for {version} holds {len(foreign)} object(s) that are not Istio "
            f"CRDs, nothing was applied: {', '.join(foreign[:10])}; render the CRDs alone "
            "(helm template istio-base istio/base --include-crds, keeping only the "
            "CustomResourceDefinitions)"
        )
    return objects


def check_bundles(kube: Kube, spec: BundleCheckInput) -> BundleCheckResult:
    """Read and sort the spec's bundles without writing anything: the precheck's view.

    Every problem an install or the CRD step would raise is returned as a line instead, so
    the upgrade is refused at plan time, before its first write (the cluster lock included).
    """
    result = BundleCheckResult()
    install = InstallInput(
        cluster=spec.cluster,
        version=spec.version,
        revision=spec.revision,
        installer=spec.installer,
        upgrade_id="precheck",
    )
    try:
        sorting = sorted_bundle(kube, install)
    except ApplicationError as error:
        if error.type != "InvalidManifest":
            raise
        result.problems.append(error.message)
    else:
        result.revision_objects = len(sorting.revision)
        result.skipped = sorting.skipped
    if spec.crds is not None:
        try:
            result.crds = len(checked_crds(kube, spec.crds, spec.version))
        except ApplicationError as error:
            if error.type != "InvalidManifest":
                raise
            result.problems.append(error.message)
    return result


def sorted_bundle(kube: Kube, spec: InstallInput) -> BundleSorting:
    """The objects of the installer's source (the built-in rendering by default), split by
    :func:`sort_bundle`: only the target revision's are applied, the tag move's are left out,
    and a bundle holding anything else (CRDs, gateways, another revision's objects) is
    refused before any write."""
    if spec.installer.sources_given():
        objects = read_bundle(kube, spec.installer, "installer")
    else:
        objects = render_revision(spec.version, spec.revision, hub=spec.hub)
    sorting = sort_bundle(objects, spec.revision)
    if sorting.refused:
        shown = sorting.refused[:10]
        more = len(sorting.refused) - len(shown)
        raise _invalid(
            f"installer bundle: {len(sorting.refused)} object(s) do not belong to revision "
            f"{spec.revision}, nothing was applied:\n- "
            + "\n- ".join(shown)
            + (f"\n- … and {more} more" if more else "")
        )
    if not sorting.revision:
        raise _invalid(
            f"installer bundle has no object of revision {spec.revision}; render it with "
            f"helm template istiod istio/istiod -n istio-system --set revision={spec.revision}"
        )
    return sorting


def _ref(kube: Kube, obj: Obj) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    _, namespaced = kube.resource(obj["apiVersion"], obj["kind"])
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
    if namespaced:
        ref["namespace"] = meta.get("namespace") or ISTIO_NAMESPACE
    return ref


def _describe(ref: dict[str, str]) -> str:
    ns = ref.get("namespace")
    return f"{ref['kind']}/{ns + '/' if ns else ''}{ref['name']}"


def install(kube: Kube, spec: InstallInput) -> InstallResult:
    """Record the inventory, then server-side apply every object of the bundle.

    The inventory is written first, so an install interrupted half-way can still be removed
    exactly; applying again is a no-op (same field manager, same content).
    """
    sorting = sorted_bundle(kube, spec)
    objects = sorting.revision
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if kube.resource(obj["apiVersion"], obj["kind"])[1]:
            meta.setdefault("namespace", ISTIO_NAMESPACE)
    refs = [_ref(kube, obj) for obj in objects]
    cm_name = inventory_configmap_name(spec.revision)
    try:
        _apply_all(kube, spec, cm_name, objects, refs)
    except NotFound as error:
        raise ApplicationError(
            f"installing {spec.revision} failed: {error}; create the namespace the bundle "
            f"needs (usually {ISTIO_NAMESPACE}) or fix the bundle",
            type="NamespaceNotFound",
            non_retryable=True,
        ) from None
    return InstallResult(
        applied=[_describe(r) for r in refs], inventory_configmap=cm_name, skipped=sorting.skipped
    )


def _owner(kube: Kube, spec: InstallInput, cm_name: str) -> str | None:
    """The upgrade id to record as the revision's installer; None for an adopted revision.

    The inventory is always written before istiod, so an istiod without our inventory was
    installed by someone else (the upgrade adopts it with ``force``). Recording our id then
    would make a later attempt treat it as its own and uninstall it on rollback.
    """
    cm = kube.get_or_none("v1", "ConfigMap", cm_name, ISTIO_NAMESPACE)
    if cm is not None:
        recorded = ((cm.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_UPGRADE_ID)
        # Keep whoever is recorded: applying without the annotation would drop it (it is ours
        # as a field manager), and with our id would claim a revision we did not install.
        return str(recorded) if recorded else None
    istiod = kube.get_or_none("apps/v1", "Deployment", istiod_name(spec.revision), ISTIO_NAMESPACE)
    return spec.upgrade_id if istiod is None else None


def _apply_all(
    kube: Kube, spec: InstallInput, cm_name: str, objects: list[Obj], refs: list[dict[str, str]]
) -> None:
    owner = _owner(kube, spec, cm_name)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": cm_name,
                "namespace": ISTIO_NAMESPACE,
                "labels": {LABEL_MANAGED_BY: MANAGER, LABEL_REV: spec.revision},
                "annotations": {ANNOTATION_UPGRADE_ID: owner} if owner else {},
            },
            "data": {"objects": json.dumps(refs, indent=1), "version": spec.version},
        }
    )
    for obj in objects:
        kube.apply(obj)


def wait_ready(
    kube: Kube,
    revision: str,
    timeout_seconds: float,
    started: float,
    heartbeat: Callable[[float], None],
) -> None:
    """Poll ``istiod-<rev>`` until every replica is available.

    Raises:
        ApplicationError: ``RevisionNotReady`` (non-retryable) at the deadline, with its status.
    """
    name = istiod_name(revision)
    last = "not found"
    while True:
        deploy = kube.get_or_none("apps/v1", "Deployment", name, ISTIO_NAMESPACE)
        if deploy is not None:
            if deployment_available(deploy):
                return
            status = deploy.get("status") or {}
            last = (
                f"{status.get('availableReplicas', 0)} of "
                f"{(deploy.get('spec') or {}).get('replicas', 1)} replicas available"
            )
        heartbeat(started)
        if time.time() - started >= timeout_seconds:
            raise ApplicationError(
                f"{ISTIO_NAMESPACE}/{name} is not Ready after {timeout_seconds:g}s ({last}); "
                "check its pods and events (kubectl -n istio-system describe deploy "
                f"{name})",
                type="RevisionNotReady",
                non_retryable=True,
            )
        time.sleep(1.0)


def move_tags(
    kube: Kube,
    tags: list[str],
    revision: str | None,
    original: dict[str, str | None] | None = None,
) -> MoveTagsResult:
    """Point each tag at ``revision`` (server-side apply); delete it when ``revision`` is None.

    Args:
        original: Tag → the revision it named before the upgrade (None: it did not exist), as
            the workflow recorded it at discovery. Moving a tag back there restores what the
            forward move changed (the revisionless injector, the default validator) and
            changes nothing else; moving it anywhere else records that state first.
    """
    result = MoveTagsResult()
    for tag in tags:
        current = kube.get_or_none(*_MWC, tag_webhook_name(tag))
        live = (
            ((current.get("metadata") or {}).get("labels") or {}).get(LABEL_REV)
            if current
            else None
        )
        result.previous[tag] = live
        known = original is not None and tag in original
        before = original[tag] if original is not None and known else live
        if revision is None:
            result.applied += default_tag.restore(kube, tag, None)
            kube.delete(*_MWC, tag_webhook_name(tag))
            kube.delete("v1", "Service", tag_service_name(tag), ISTIO_NAMESPACE)
            result.applied.append(f"{tag} removed")
            continue
        if (revision == before) if known else default_tag.moves_back(kube, tag, revision):
            # Back where it was: the revisionless injector and the validators return as they
            # were, before the tag serves that revision again; nothing is deactivated.
            result.applied += default_tag.restore(kube, tag, revision)
            _apply_tag(kube, tag, revision)
            result.applied.append(f"{tag} → {revision}")
            continue
        if before != revision:
            default_tag.prepare(kube, tag, before, known=known)
        _apply_tag(kube, tag, revision)
        result.applied.append(f"{tag} → {revision}")
        result.applied += default_tag.follow(kube, tag, revision)
    return result


def _apply_tag(kube: Kube, tag: str, revision: str) -> None:
    for obj in render_tag(tag, revision):
        if kube.resource(obj["apiVersion"], obj["kind"])[1]:
            obj["metadata"].setdefault("namespace", ISTIO_NAMESPACE)
        kube.apply(obj)


def revision_unused(
    kube: Kube, revision: str, tick: Callable[[], None] | None = None
) -> UnusedReport:
    """Whether anything still uses a revision: live pods it injected, namespace labels, tags.

    Every pod of the cluster is read, a page at a time; ``tick`` is called per page (the
    activity's heartbeat)."""
    report = UnusedReport(unused=True)
    pods: list[str] = []
    for pod in kube.list("v1", "Pod", on_page=tick):
        if injected_revision(pod) != revision:
            continue
        meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
        if phase in {"Succeeded", "Failed"}:
            report.ignored_pods += 1
            continue
        if meta.get("deletionTimestamp"):
            continue
        pods.append(f"{meta.get('namespace')}/{meta['name']}")
    if pods:
        shown = ", ".join(pods[:10]) + (f" and {len(pods) - 10} more" if len(pods) > 10 else "")
        report.blockers.append(f"{len(pods)} running pod(s) injected by {revision}: {shown}")
    labelled = [
        ns["metadata"]["name"]
        for ns in kube.list("v1", "Namespace", label_selector=f"{LABEL_REV}={revision}")
    ]
    if revision == DEFAULT_TAG and labelled:
        # istio.io/rev=default is also what the default tag serves (its rev.namespace webhook,
        # revision-tags-mwc.yaml): once that tag points elsewhere, such namespaces follow it.
        tag = kube.get_or_none(*_MWC, tag_webhook_name(DEFAULT_TAG))
        tag_revision = ((tag or {}).get("metadata") or {}).get("labels", {}).get(LABEL_REV)
        if tag_revision not in (None, DEFAULT_TAG):
            labelled = []
    if labelled:
        shown = ", ".join(labelled[:10]) + (
            f" and {len(labelled) - 10} more" if len(labelled) > 10 else ""
        )
        report.blockers.append(
            f"{len(labelled)} namespace(s) labelled {LABEL_REV}={revision}: {shown}"
        )
    tags = [
        (c["metadata"].get("labels") or {}).get(LABEL_TAG, "")
        for c in kube.list(*_MWC, label_selector=f"{LABEL_TAG},{LABEL_REV}={revision}")
    ]
    if tags:
        report.blockers.append(f"tags pointing at {revision}: {', '.join(sorted(tags))}")
    # Any other webhook still calling the revision's istiod (the base chart's default
    # validator, a hand-made tag, another tool's webhook) fails closed once it is gone.
    own = {f"{r['kind']}/{r['name']}" for r in _revision_refs(kube, revision)}
    callers = [t for t in default_tag.targets(kube, istiod_name(revision)) if t not in own]
    if callers:
        report.blockers.append(
            f"webhooks still calling {ISTIO_NAMESPACE}/{istiod_name(revision)}: "
            f"{', '.join(callers)}; point them at the new revision (istioctl tag set default "
            "for istiod-default-validator) before removing it"
        )
    report.unused = not report.blockers
    return report


def _default_refs(revision: str) -> list[dict[str, str]]:
    ns = ISTIO_NAMESPACE
    name = istiod_name(revision)
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "name": validator_webhook_name(revision)},
        {"apiVersion": _MWC[0], "kind": _MWC[1], "name": injector_webhook_name(revision)},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "name": name, "namespace": ns},
        {"apiVersion": "v1", "kind": "Service", "name": name, "namespace": ns},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "namespace": ns},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": injector_webhook_name(revision),
         "namespace": ns},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": mesh_configmap_name(revision),
         "namespace": ns},
    ]  # fmt: skip


def _revision_refs(kube: Kube, revision: str) -> list[dict[str, str]]:
    """The objects uninstalling ``revision`` deletes: its inventory's, else the chart's names."""
    cm = kube.get_or_none("v1", "ConfigMap", inventory_configmap_name(revision), ISTIO_NAMESPACE)
    if cm is None:
        return _default_refs(revision)
    try:
        refs: list[dict[str, str]] = json.loads((cm.get("data") or {}).get("objects", "[]"))
    except ValueError:
        return _default_refs(revision)
    return refs


def _refuse_operator_owned(kube: Kube, revision: str) -> None:
    """Refuse to delete by the chart's names a revision the Sail Operator renders: it would
    render the objects again, and only deleting its ``IstioRevision`` removes it."""
    istiod = kube.get_or_none("apps/v1", "Deployment", istiod_name(revision), ISTIO_NAMESPACE)
    owners = ((istiod or {}).get("metadata") or {}).get("ownerReferences") or []
    owner = next((o for o in owners if o.get("kind") == "IstioRevision"), None)
    if owner is not None:
        raise ApplicationError(
            f"revision {revision} is rendered by the Sail Operator (IstioRevision/"
            f"{owner.get('name')}); remove it with kubectl delete istiorevision "
            f"{owner.get('name')}, or upgrade with installer.strategy sail",
            type="OperatorManaged",
            non_retryable=True,
        )


def uninstall(kube: Kube, revision: str) -> UninstallResult:
    """Delete a revision's objects: the inventory's list when present, else the well-known names.

    Webhook configurations go first (so no pod creation is routed to an istiod being removed),
    then the rest in reverse apply order; objects already gone are reported, not errors.
    """
    result = UninstallResult()
    cm_name = inventory_configmap_name(revision)
    cm = kube.get_or_none("v1", "ConfigMap", cm_name, ISTIO_NAMESPACE)
    if cm is None:
        _refuse_operator_owned(kube, revision)
    if cm is not None:
        try:
            refs: list[dict[str, str]] = json.loads((cm.get("data") or {}).get("objects", "[]"))
        except ValueError:
            raise _invalid(
                f"{ISTIO_NAMESPACE}/{cm_name} is corrupt; delete the revision by hand"
            ) from None
        # A hand-rendered bundle may list its webhooks anywhere; delete them first regardless,
        # or pod creation would keep being routed (failurePolicy: Fail) to a vanishing istiod.
        refs = sorted(
            reversed(refs), key=lambda r: not r.get("kind", "").endswith("WebhookConfiguration")
        )
        result.from_inventory = True
    else:
        refs = _default_refs(revision)
    for ref in refs:
        gone = not kube.delete(ref["apiVersion"], ref["kind"], ref["name"], ref.get("namespace"))
        (result.missing if gone else result.deleted).append(_describe(ref))
    if cm is not None:
        kube.delete("v1", "ConfigMap", cm_name, ISTIO_NAMESPACE)
    return result


__all__ = [
    "NotFound",
    "apply_crds",
    "check_bundles",
    "install",
    "move_tags",
    "revision_unused",
    "sorted_bundle",
    "uninstall",
    "wait_ready",
]
