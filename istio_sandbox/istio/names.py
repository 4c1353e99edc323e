"""Istio's labels, annotations and object names, as upstream spells them.

Sources (istio/istio): ``manifests/charts/istio-control/istio-discovery/templates`` (object
names with and without a revision), ``manifests/charts/base/templates`` (the default
validator), ``istio.io/api/label`` and ``annotation`` (the keys), ``pkg/kube/inject``
(what an injected pod carries).
"""

from __future__ import annotations

import re

ISTIO_NAMESPACE = "istio-system"
"""``global.istioNamespace`` / the release namespace of istiod."""

# Namespace and pod labels that route injection (mutatingwebhook.yaml).
LABEL_INJECTION = "istio-injection"
LABEL_REV = "istio.io/rev"
LABEL_TAG = "istio.io/tag"
LABEL_POD_INJECT = "sidecar.istio.io/inject"
LABEL_DATAPLANE_MODE = "istio.io/dataplane-mode"

# Pod annotations written by the injector (pkg/kube/inject/inject.go).
ANNOTATION_REV = "istio.io/rev"
ANNOTATION_STATUS = "sidecar.istio.io/status"
ANNOTATION_INJECT = "sidecar.istio.io/inject"
"""Legacy per-pod opt-in/out; the label of the same key wins when both are set."""
ANNOTATION_INJECT_TEMPLATES = "inject.istio.io/templates"

PROXY_CONTAINER = "istio-proxy"
DEFAULT_REVISION = "default"
"""What ``.Values.revision | default "default"`` renders for a revisionless install."""

DEFAULT_VALIDATOR = "istiod-default-validator"
"""The base chart's ValidatingWebhookConfiguration, rendered when ``defaultRevision`` is set."""


def _suffix(revision: str) -> str:
    """``-<rev>`` for a revisioned install, nothing for a revisionless one (``revision: ""``)."""
    return f"-{revision}" if revision and revision != DEFAULT_REVISION else ""


def istiod_name(revision: str) -> str:
    """Deployment, Service, ServiceAccount and PDB of a revision: ``istiod[-<rev>]``."""
    return f"istiod{_suffix(revision)}"


def injector_name(revision: str) -> str:
    """MutatingWebhookConfiguration and ConfigMap: ``istio-sidecar-injector[-<rev>]``."""
    return f"istio-sidecar-injector{_suffix(revision)}"


def mesh_configmap_name(revision: str) -> str:
    """The meshConfig ConfigMap: ``istio[-<rev>]``."""
    return f"istio{_suffix(revision)}"


def validator_name(revision: str, namespace: str = ISTIO_NAMESPACE) -> str:
    """Per-revision ValidatingWebhookConfiguration: ``istio-validator[-<rev>]-<ns>``."""
    return f"istio-validator{_suffix(revision)}-{namespace}"


def tag_webhook_name(tag: str) -> str:
    """``revision-tags-mwc.yaml`` / ``istioctl tag set``: ``istio-revision-tag-<tag>``."""
    return f"istio-revision-tag-{tag}"


def tag_service_name(tag: str) -> str:
    """``revision-tags-svc.yaml``: ``istiod-revision-tag-<tag>``."""
    return f"istiod-revision-tag-{tag}"


def rev_label_value(revision: str) -> str:
    """The ``istio.io/rev`` label an install's objects carry: the revision, or ``default``."""
    return revision or DEFAULT_REVISION


_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?\Z")
# ``\Z``, not ``$``: ``$`` also matches before a trailing newline ("app\n" is no DNS label).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def is_dns1123_label(value: str) -> bool:
    return bool(_DNS1123_LABEL.match(value))


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.31.0"`` → ``(1, 24, 2)``; ValueError for anything else."""
    m = _VERSION.match(version.strip())
    if not m:
        raise ValueError(f"{version!r} is not an Istio version like 1.31.0")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def revision_of_version(version: str) -> str:
    """Istio's docs name revisions after versions with dashes: ``1.31.0`` → ``1-31-0``."""
    return version.strip().replace(".", "-").lower()


def image_tag(image: str) -> str:
    """``docker.io/istio/proxyv2:1.31.0`` → ``1.31.0``."""
    tail = image.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else ""
