"""``deploy/``'s observability parts agree with the worker and with the SLO rule generator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from istio_upgrade.observability import ACTIVITY_ERRORS, health_address, metrics_address
from istio_upgrade.slo.rules import dump_yaml, render_crd
from istio_upgrade.slo.sloth import load_slos
from istio_upgrade.workflows import metrics
from tests.unit.test_deploy_rbac import kustomize, objects_of

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "components" / "monitoring"


def _body(path: Path) -> str:
    """The file without its leading comment lines (the header naming the command)."""
    lines = path.read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def test_checked_in_slo_rules_are_the_generators_output() -> None:
    slos = load_slos(str(MONITORING / "slos.yaml"))
    generated = dump_yaml(render_crd(slos, "istio-upgrade-slos", "istio-upgrade"))
    assert _body(MONITORING / "slo-rules.yaml") == generated, (
        "deploy/components/monitoring/slo-rules.yaml is stale: regenerate it with the command "
        "in its header"
    )


def _worker(docs: list[dict[str, Any]]) -> dict[str, Any]:
    # One Deployment per worker version (deploy/versions/), today one.
    (deployment,) = [
        d
        for d in objects_of("Deployment", docs)
        if d["metadata"]["name"].startswith("istio-upgrade-worker")
    ]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_probes_ports_and_addresses_agree() -> None:
    docs = kustomize()
    container = _worker(docs)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_at, health_at = metrics_address(env), health_address(env)
    assert metrics_at and health_at
    assert ports["metrics"] == int(metrics_at.rsplit(":", 1)[1])
    assert ports["health"] == int(health_at.rsplit(":", 1)[1])
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]
    (service,) = [
        s
        for s in objects_of("Service", docs)
        if s["metadata"]["name"] == "istio-upgrade-worker-metrics"
    ]
    (monitor,) = objects_of("ServiceMonitor", docs)
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    assert selected <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= (_pod_labels(docs).items()), (
        "the Service selects the worker's pods"
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
        service["spec"]["ports"][0]["name"]
    ]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = objects_of("Deployment", docs)
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_worker_alerts_use_the_metrics_the_worker_exports() -> None:
    rules = yaml.safe_load((MONITORING / "worker-rules.yaml").read_text())
    text = yaml.safe_dump(rules)
    assert f"{ACTIVITY_ERRORS}_total" in text
    assert f"{metrics.ROLLBACKS}_total" in text
    # The ServiceMonitor's targets get the Service's name as their job.
    assert 'job="istio-upgrade-worker-metrics"' in text


def test_promtool_accepts_the_worker_alerts(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH")
    for name in ("worker-rules.yaml", "slo-rules.yaml"):
        spec = yaml.safe_load((MONITORING / name).read_text())["spec"]
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec))
        done = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
