"""Rendered revision bundles for the demo and the tests, as ``helm template istiod`` makes them.

The rendering is the sandbox's (written from upstream's istio-discovery chart), so the product
installs a bundle it did not write itself, exactly as it would in production.
"""

from __future__ import annotations

from istio_sandbox.istio.charts import render_crds, render_istiod
from istio_upgrade.istio.manifests import render_bundle_yaml


def revision_bundle(version: str, revision: str) -> str:
    """``helm template istiod istio/istiod -n istio-system --set revision=<rev>``."""
    return render_bundle_yaml(render_istiod(version, revision))


def crds_bundle() -> str:
    """The base chart's Istio CRDs (``helm template istio-base istio/base --include-crds``)."""
    return render_bundle_yaml(render_crds())
