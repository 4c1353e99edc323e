"""The upgrade spec as the CLI reads, documents and exemplifies it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from istio_upgrade.cli.specfile import load_model
from istio_upgrade.models import UpgradeSpec

EXAMPLE_YAML = """\
# Upgrade the mesh of cluster `prod` to Istio 1.31.0 (revision 1-31-0).
# Every field is documented in `istio-upgrade schema`; omitted fields take their defaults.
cluster:
  name: prod
  context: prod-admin            # kubeconfig context the worker uses
  prometheus_url: http://prometheus.istio-system.svc:9090
target:
  version: 1.31.0
installer:                       # the revision, rendered by
  # helm template istiod istio/istiod -n istio-system --set revision=1-31-0 --version 1.31.0
  bundle_path: /bundles/istiod-1-31-0.yaml
crds:                            # applied first; a rollback never deletes a CRD
  bundle_path: /bundles/istio-crds-1-31-0.yaml
migration:
  selector: ""                   # kubectl -l syntax; empty = every injected namespace
  exclude: [kube-system]
  canary: [bookinfo-canary]      # the first batch
  growth_factor: 2               # then batches of 2, 4, 8 … namespaces
  max_batch_size: 10
gate:
  warmup_seconds: 60
  soak_seconds: 600
  interval_seconds: 30
  on_inconclusive: wait_for_approval
approvals:
  before_promote: true           # a person confirms before the default tag moves
cleanup:
  grace_seconds: 300
"""


def load_spec(path: str | Path) -> UpgradeSpec:
    """Load and validate a spec file (YAML or JSON, ``-`` for stdin).

    Raises:
        istio_upgrade.cli.specfile.SpecError: With one ``field.path: message`` line per problem.
    """
    return load_model(path, UpgradeSpec)


def spec_schema() -> dict[str, Any]:
    """JSON schema of :class:`~istio_upgrade.models.UpgradeSpec`, with the example attached."""
    schema = UpgradeSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["examples"] = [example_spec().model_dump(mode="json", exclude_defaults=True)]
    return schema


def example_yaml() -> str:
    """An annotated example spec; the tests keep it valid."""
    return EXAMPLE_YAML


def example_spec() -> UpgradeSpec:
    """:data:`EXAMPLE_YAML` validated."""
    import yaml

    return UpgradeSpec.model_validate(yaml.safe_load(EXAMPLE_YAML))
