"""The Sail Operator's API (``sailoperator.io/v1``) as the sandbox serves it: CRDs, versions,
names.

Upstream: istio-ecosystem/sail-operator ``api/v1/*_types.go`` (fields, defaults, enums,
condition types), ``chart/crds/sailoperator.io_*.yaml`` (all five kinds cluster-scoped, one
served version ``v1``; ZTunnel also serves the deprecated ``v1alpha1``) and
``pkg/istioversion/versions.yaml`` (what ``-latest`` aliases resolve to, which versions are
end-of-life).
"""

from __future__ import annotations

from istio_sandbox.resources import ResourceType
from istio_sandbox.store import Obj

GROUP = "sailoperator.io"
API_VERSION = f"{GROUP}/v1"

ISTIOS = ResourceType(
    GROUP, "v1", "Istio", "istios", False, (), ("status",), ("istio-io",), "istio"
)
ISTIO_REVISIONS = ResourceType(
    GROUP,
    "v1",
    "IstioRevision",
    "istiorevisions",
    False,
    (),
    ("status",),
    ("istio-io",),
    "istiorevision",
)
ISTIO_REVISION_TAGS = ResourceType(
    GROUP,
    "v1",
    "IstioRevisionTag",
    "istiorevisiontags",
    False,
    (),
    ("status",),
    ("istio-io",),
    "istiorevisiontag",
)
ISTIO_CNIS = ResourceType(
    GROUP, "v1", "IstioCNI", "istiocnis", False, (), ("status",), ("istio-io",), "istiocni"
)
ZTUNNELS = ResourceType(
    GROUP, "v1", "ZTunnel", "ztunnels", False, (), ("status",), ("istio-io",), "ztunnel"
)
SAIL_TYPES = (ISTIOS, ISTIO_REVISIONS, ISTIO_REVISION_TAGS, ISTIO_CNIS, ZTUNNELS)
"""Served once their CRDs exist (the store key is ``sailoperator.io/<plural>``)."""

VERSIONS: tuple[str, ...] = (
    "v1.31-latest", "v1.31.0", "v1.31.0-beta.1", "v1.30-latest", "v1.30.3", "v1.30.2", "v1.30.1",
    "v1.30.0", "v1.29-latest", "v1.29.6", "v1.29.5", "v1.29.4", "v1.29.3", "v1.29.2",
    "v1.29.1", "v1.29.0", "v1.28-latest", "v1.28.10", "v1.28.9", "v1.28.8", "v1.28.7",
    "v1.28.6", "v1.28.5", "v1.28.4", "v1.28.3", "v1.28.2", "v1.28.1", "v1.28.0",
    "v1.27-latest", "v1.27.9", "v1.27.8", "v1.27.7", "v1.27.6", "v1.27.5", "v1.27.4",
    "v1.27.3", "v1.27.2", "v1.27.1", "v1.27.0", "v1.26-latest", "v1.26.8", "v1.26.7",
    "v1.26.6", "v1.26.5", "v1.26.4", "v1.26.3", "v1.26.2", "v1.26.1", "v1.26.0",
    "v1.25-latest", "v1.25.5", "v1.25.4", "v1.25.3", "v1.25.2", "v1.25.1", "v1.24-latest",
    "v1.24.6", "v1.24.5", "v1.24.4", "v1.24.3", "v1.24.2", "v1.24.1", "v1.24.0",
    "v1.23-latest", "v1.23.6", "v1.23.5", "v1.23.4", "v1.23.3", "v1.23.2", "v1.22-latest",
    "v1.22.8", "v1.22.7", "v1.22.6", "v1.22.5", "v1.21.6", "master", "v1.32.0-alpha.527f8d6c",
)  # fmt: skip
"""The ``spec.version`` enum of every Sail kind (``+kubebuilder:validation:Enum``)."""

END_OF_LIFE: frozenset[str] = frozenset(
    v for v in VERSIONS if v.startswith(tuple(f"v1.{minor}" for minor in range(21, 29)))
)
"""Versions the sandbox's Sail refuses to install (``eol: true`` in versions.yaml): as
upstream, everything before the three newest minors (1.29, 1.30, 1.31). ``v1.31.0`` is listed
as the Sail release that ships it lists it (the versions.yaml read had its beta only)."""

DEFAULT_VERSION = "v1.31.0-beta.1"
"""``+kubebuilder:default`` of ``spec.version``."""
UPDATE_STRATEGIES = ("InPlace", "RevisionBased")
PROFILES = (
    "ambient", "default", "demo", "empty", "external", "openshift", "openshift-ambient",
    "preview", "remote", "stable",
)  # fmt: skip
TARGET_KINDS = ("Istio", "IstioRevision")
DEFAULT_GRACE_PERIOD_S = 30
"""``DefaultRevisionDeletionGracePeriodSeconds`` (api/v1/istio_types.go)."""
DEFAULT_REVISION = "default"
"""An IstioRevision of this name installs the revisionless istiod (``values.revision: ""``)."""


def resolve_version(version: str) -> str:
    """``v1.23-latest`` → ``v1.23.6``, ``master`` → the alpha build; others unchanged.

    The alias's target is the newest release of its minor in :data:`VERSIONS` (which lists
    each alias before its releases, newest first, as versions.yaml's ``ref`` does).
    """
    if version == "master":
        return next(v for v in VERSIONS if "-alpha." in v)
    if version.endswith("-latest"):
        minor = version[: -len("-latest")] + "."
        return next((v for v in VERSIONS if v.startswith(minor)), version)
    return version


def image_version(version: str) -> str:
    """The image tag a Sail version installs: ``v1.23.4`` → ``1.23.4``."""
    return resolve_version(version).removeprefix("v")


def revision_name(istio_name: str, version: str, strategy: str) -> str:
    """The active IstioRevision of an Istio (controllers/istio getActiveRevisionName):
    the Istio's name for ``InPlace``, ``<name>-<version, dots as dashes>`` for
    ``RevisionBased`` (``default`` + ``v1.24.2`` → ``default-v1-24-2``)."""
    if strategy == "RevisionBased":
        return f"{istio_name}-{version.replace('.', '-')}"
    return istio_name


def chart_revision(revision: str) -> str:
    """The chart's ``values.revision`` of an IstioRevision (pkg/istiovalues ApplyOverrides):
    ``""`` for ``default`` (revisionless names), else the IstioRevision's name."""
    return "" if revision == DEFAULT_REVISION else revision


def _crd(rt: ResourceType, *, extra_versions: tuple[str, ...] = ()) -> Obj:
    versions = [
        {
            "name": v,
            "served": True,
            "storage": v == rt.version,
            "subresources": {"status": {}},
            "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
            **({"deprecated": True} if v != rt.version else {}),
        }
        for v in (rt.version, *extra_versions)
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{rt.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "categories": list(rt.categories),
                "kind": rt.kind,
                "listKind": rt.list_kind,
                "plural": rt.plural,
                "singular": rt.singular,
            },
            "scope": "Cluster",
            "versions": versions,
        },
    }


def render_sail_crds() -> list[Obj]:
    """The five CRDs of Sail's chart (schemas reduced to ``x-kubernetes-preserve-unknown-fields``;
    the sandbox's admission checks the fields the upgrade relies on, see controllers/sail)."""
    return [_crd(rt, extra_versions=("v1alpha1",) if rt is ZTUNNELS else ()) for rt in SAIL_TYPES]
