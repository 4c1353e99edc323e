"""Which objects of a rendered bundle belong to the revision being installed.

A revision install applies the objects of one istiod revision and nothing else. Full renders
(``istioctl manifest generate``, a ``helm template`` of several charts) also carry the base
chart's CRDs, gateways, the ``istio-system`` Namespace or another revision's objects; taking
those over would make a rollback delete them — deleting a CRD deletes every Istio resource of
its kind. Upstream's layout (``manifests/charts/istio-control/istio-discovery/templates``):
every object of a revision has the ``istio.io/rev: <rev>`` label or ``-<rev>`` in its name
(``istiod-clusterrole-<rev>-istio-system``, ``istio-reader-clusterrole-<rev>-…``).

Pure code only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from istio_upgrade.istio.naming import DEFAULT_VALIDATOR, ISTIO_NAMESPACE, LABEL_REV, LABEL_TAG

_GATEWAY_LABELS = {"ingressgateway", "egressgateway", "eastwestgateway"}


@dataclass
class BundleSorting:
    """A bundle split by where each object belongs."""

    revision: list[dict[str, Any]] = field(default_factory=list)
    """Objects of the revision: applied."""
    skipped: list[str] = field(default_factory=list)
    """Objects the tag move owns (tag webhooks, ``istiod-default-validator``): not applied."""
    refused: list[str] = field(default_factory=list)
    """Objects that must not be applied by a revision install, each with what to do instead."""


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def _names_revision(name: str, revision: str) -> bool:
    return re.search(rf"(^|-){re.escape(revision)}(-|$)", name) is not None


def _is_gateway(obj: dict[str, Any]) -> bool:
    """The gateway chart's objects (``manifests/charts/gateway``): its pods opt in per pod
    with the gateway template; its metadata carries ``app``/``istio`` of the gateway name."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = str(meta.get("name", ""))
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    pod_labels = template.get("labels") or {}
    pod_annotations = template.get("annotations") or {}
    return (
        labels.get("istio") in _GATEWAY_LABELS
        or labels.get("app") in {f"istio-{g}" for g in _GATEWAY_LABELS}
        or name.startswith(("istio-ingressgateway", "istio-egressgateway"))
        or pod_annotations.get("inject.istio.io/templates") == "gateway"
        or pod_labels.get("sidecar.istio.io/inject") == "true"
        or (
            labels.get("app.kubernetes.io/name") not in (None, "istiod")
            and "gateway" in str(labels.get("app.kubernetes.io/name"))
        )
    )


def sort_bundle(objects: list[dict[str, Any]], revision: str) -> BundleSorting:
    """Split ``objects`` into the revision's, the tag move's, and the refused.

    Args:
        objects: The bundle's documents.
        revision: The revision being installed, e.g. ``1-31-0``.
    """
    out = BundleSorting()
    for obj in objects:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        name = str(meta.get("name", ""))
        kind = str(obj.get("kind", ""))
        what = _describe(obj)
        rev_label = labels.get(LABEL_REV)
        if kind == "CustomResourceDefinition":
            out.refused.append(
                f"{what}: a CRD belongs to the base chart; apply CRDs as their own step "
                "(spec crds, or helm upgrade istio-base) and render the revision alone "
                "(helm template istiod istio/istiod --set revision=…)"
            )
        elif kind == "Namespace":
            out.refused.append(f"{what}: create namespaces beforehand; remove it from the bundle")
        elif _is_gateway(obj):
            out.refused.append(
                f"{what}: gateways are upgraded by migrating their pods after the batches, "
                "not installed with the revision; render the istiod chart alone"
            )
        elif meta.get("namespace") not in (None, "", ISTIO_NAMESPACE):
            out.refused.append(
                f"{what}: a revision installs into {ISTIO_NAMESPACE}; an object in another "
                "namespace is not the istiod chart's (render it with -n istio-system)"
            )
        elif name == DEFAULT_VALIDATOR or LABEL_TAG in labels:
            out.skipped.append(f"{what}: moved with its tag at promote, not applied at install")
        elif rev_label is not None and rev_label != revision:
            out.refused.append(
                f"{what}: belongs to revision {rev_label!r}, not {revision!r}; render the bundle "
                f"with --set revision={revision}"
            )
        elif rev_label == revision or _names_revision(name, revision):
            out.revision.append(obj)
        else:
            out.refused.append(
                f"{what}: neither labelled {LABEL_REV}={revision} nor named after the revision; "
                "a revision install applies only the istiod chart's objects of that revision"
            )
    return out
