"""Istio's names and labels (see istio/istio manifests/charts/istio-control/istio-discovery)."""

from __future__ import annotations

import re

ISTIO_NAMESPACE = "istio-system"

LABEL_INJECTION = "istio-injection"
"""Namespace label ``istio-injection=enabled``, served by the default tag; beats the rev label."""
LABEL_REV = "istio.io/rev"
"""Namespace (or pod) label naming a revision or a tag."""
LABEL_TAG = "istio.io/tag"
"""Label on a tag's MutatingWebhookConfiguration."""
LABEL_POD_INJECT = "sidecar.istio.io/inject"
"""Pod label: ``false`` opts the pod out; ``true`` opts it in under the default tag."""
ANNOTATION_REV = "istio.io/rev"
"""Pod annotation naming the revision that injected it (never a tag)."""
ANNOTATION_STATUS = "sidecar.istio.io/status"
"""Pod annotation, JSON, with a ``revision`` field."""
ANNOTATION_RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ANNOTATION_INJECT_TEMPLATES = "inject.istio.io/templates"
PROXY_CONTAINER = "istio-proxy"
DEFAULT_TAG = "default"

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline ("app\n" is no DNS label).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?\Z")


def is_dns1123_label(value: str) -> bool:
    return bool(_DNS1123_LABEL.match(value))


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.31.0"`` → ``(1, 24, 2)``; raises ValueError naming the expected form."""
    m = _VERSION.match(version.strip())
    if not m:
        raise ValueError(f"{version!r} is not an Istio version like 1.31.0")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def revision_for_version(version: str) -> str:
    """The conventional revision name of a version: dots become dashes (``1.31.0`` → ``1-31-0``)."""
    name = version.strip().replace(".", "-").lower()
    if not is_dns1123_label(name):
        raise ValueError(f"revision name {name!r} derived from {version!r} is not a DNS-1123 label")
    return name


DEFAULT_VALIDATOR = "istiod-default-validator"
"""The base chart's ValidatingWebhookConfiguration, for the default revision (no objectSelector)."""
LABEL_DEACTIVATED = "istio.io/deactivated"
"""The label of istioctl's never-matching selector (``istioctl/pkg/util/common.go`` NeverMatch)."""


def _suffix(revision: str) -> str:
    # Charts append "-<rev>" only when .Values.revision is set; a revisionless install (the
    # product calls its revision "default", as its objects' istio.io/rev label does) has none.
    return f"-{revision}" if revision and revision != DEFAULT_TAG else ""


def istiod_name(revision: str) -> str:
    """Deployment, Service, PDB, ServiceAccount: ``istiod-<rev>``, or ``istiod`` revisionless."""
    return f"istiod{_suffix(revision)}"


def injector_webhook_name(revision: str) -> str:
    """MutatingWebhookConfiguration and ConfigMap ``istio-sidecar-injector[-<rev>]``."""
    return f"istio-sidecar-injector{_suffix(revision)}"


def mesh_configmap_name(revision: str) -> str:
    """The meshConfig ConfigMap ``istio[-<rev>]``."""
    return f"istio{_suffix(revision)}"


def validator_webhook_name(revision: str, namespace: str = ISTIO_NAMESPACE) -> str:
    """ValidatingWebhookConfiguration ``istio-validator[-<rev>]-<namespace>``."""
    return f"istio-validator{_suffix(revision)}-{namespace}"


def tag_webhook_name(tag: str) -> str:
    return f"istio-revision-tag-{tag}"


def tag_service_name(tag: str) -> str:
    return f"istiod-revision-tag-{tag}"


def image_tag(image: str) -> str:
    """``docker.io/istio/proxyv2:1.31.0`` → ``1.31.0`` (digest-free images only)."""
    tail = image.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else ""
