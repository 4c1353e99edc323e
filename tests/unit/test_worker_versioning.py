"""Worker Versioning settings, which workers register a version, and deploy/versions/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.common import VersioningBehavior

from istio_upgrade.versioning import (
    VersioningConfigError,
    VersioningSettings,
    package_version,
    settings_from_env,
)
from istio_upgrade.workflows.fleet import FleetRollout
from istio_upgrade.workflows.removal import IstioRevisionRemoval
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade

VERSIONS = Path(__file__).parents[2] / "deploy" / "versions"


def test_off_by_default_with_the_package_version_as_build_id() -> None:
    settings = settings_from_env({})
    assert settings == VersioningSettings(False, "istio-upgrade", package_version())
    assert settings.deployment_config() is None


def test_on_registers_the_named_version_pinned_by_default() -> None:
    settings = settings_from_env(
        {"WORKER_VERSIONING": "on", "WORKER_DEPLOYMENT_NAME": "mesh", "WORKER_BUILD_ID": "2.0"}
    )
    config = settings.deployment_config()
    assert config is not None and config.use_worker_versioning
    assert config.version.to_canonical_string() == "mesh.2.0"
    assert config.default_versioning_behavior == VersioningBehavior.PINNED


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_VERSIONING": "maybe"}, "WORKER_VERSIONING"),
        ({"WORKER_DEPLOYMENT_NAME": "istio.upgrade"}, "WORKER_DEPLOYMENT_NAME"),
        ({"WORKER_DEPLOYMENT_NAME": ""}, "WORKER_DEPLOYMENT_NAME"),
        ({"WORKER_BUILD_ID": "1.0 beta"}, "WORKER_BUILD_ID"),
        ({"WORKER_BUILD_ID": "__unversioned__"}, "WORKER_BUILD_ID"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(VersioningConfigError, match=named):
        settings_from_env(env)


def test_workflows_leave_the_behaviour_to_the_worker() -> None:
    # Pinned by the versioned worker's default; a behaviour on the definition would make an
    # unversioned worker's task completions fail on the server.
    for workflow_class in (IstioCanaryUpgrade, IstioRevisionRemoval, FleetRollout):
        definition = getattr(workflow_class, "__temporal_workflow_definition")
        assert definition.versioning_behavior == VersioningBehavior.UNSPECIFIED, workflow_class


def rendered(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH (kubectl kustomize renders deploy/)")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_each_listed_version_runs_its_own_versioned_deployment() -> None:
    listed = yaml.safe_load((VERSIONS / "kustomization.yaml").read_text())["resources"]
    assert listed, "deploy/versions lists no worker version"
    docs = rendered(VERSIONS)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    budgets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    for build_id in listed:
        name = f"istio-upgrade-worker-{build_id.replace('.', '-')}"
        deployment = deployments[name]
        labels = {"app.kubernetes.io/name": "istio-upgrade-worker"}
        labels["istio-upgrade.io/build-id"] = build_id
        assert deployment["spec"]["selector"]["matchLabels"] == labels
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(f":{build_id}")
        env = {e["name"]: e for e in container["env"]}
        assert env["WORKER_VERSIONING"]["value"] == "on"
        assert env["WORKER_BUILD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['istio-upgrade.io/build-id']"
        )
    assert set(deployments) == {f"istio-upgrade-worker-{b.replace('.', '-')}" for b in listed}, (
        "a Deployment of a version deploy/versions does not list"
    )
