"""Everything ``kubectl kustomize deploy/`` renders is accepted by an API server that checks it.

The sandbox validates what a real API server validates for these objects: a Deployment's
container ports, probes and resources, a Service's ports, and custom resources against their
CRD's schema (here the Prometheus Operator's own ServiceMonitor and PrometheusRule CRDs,
strictly: ``kubectl`` asks for ``fieldValidation=Strict``). The rendering is applied with
``kubectl`` and every object read back; then broken copies of the same objects are refused,
naming the field, so the acceptance is not vacuous.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.integration.monitoring_crds import prometheus_operator_crds
from tests.unit.test_deploy_rbac import kustomize

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH"),
]


def kubectl(sandbox: Any, *args: str, docs: list[dict[str, Any]] | None = None) -> Any:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), *args],
        input=yaml.safe_dump_all(docs) if docs is not None else None,
        text=True,
        capture_output=True,
        timeout=60,
    )


def _plural(kind: str) -> str:
    return {"PodDisruptionBudget": "poddisruptionbudgets.policy"}.get(kind, kind.lower())


async def test_rendered_deploy_is_accepted_and_broken_copies_are_not(
    sandbox_factory: Any,
) -> None:
    sandbox = await sandbox_factory("demo")
    crds = await asyncio.to_thread(
        kubectl, sandbox, "apply", "-f", "-", docs=prometheus_operator_crds()
    )
    assert crds.returncode == 0, crds.stderr
    docs = kustomize()
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ServiceMonitor", "PrometheusRule"} <= kinds, kinds

    applied = await asyncio.to_thread(kubectl, sandbox, "apply", "-f", "-", docs=docs)
    assert applied.returncode == 0, applied.stderr
    for doc in docs:
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        got = await asyncio.to_thread(
            kubectl, sandbox, "get", *where, _plural(doc["kind"]), meta["name"], "-o", "json"
        )
        assert got.returncode == 0, (doc["kind"], meta["name"], got.stderr)

    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("metrics")
    )
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")

    def broken(doc: dict[str, Any], name: str, change: Any) -> dict[str, Any]:
        copied = copy.deepcopy(doc)
        copied["metadata"]["name"] = name
        change(copied)
        return copied

    def container(d: dict[str, Any]) -> dict[str, Any]:
        c: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
        return c

    cases = [
        (
            broken(
                deployment,
                "bad-port",
                lambda d: container(d)["ports"][0].update(containerPort=70000),
            ),
            "containerPort",
        ),
        (
            broken(
                deployment,
                "bad-probe",
                lambda d: container(d)["livenessProbe"]["httpGet"].update(
                    port="not_a-port-name-at-all"
                ),
            ),
            "livenessProbe.httpGet.port",
        ),
        (
            broken(
                deployment,
                "bad-limits",
                lambda d: container(d)["resources"].update(requests={"memory": "1Gi"}),
            ),
            "resources.requests",
        ),
        (
            broken(service, "bad-target", lambda d: d["spec"]["ports"][0].update(targetPort=0.5)),
            "targetPort",
        ),
        (
            broken(
                monitor, "bad-monitor", lambda d: d["spec"].update(endpoint=[{"port": "metrics"}])
            ),
            'unknown field "spec.endpoint"',
        ),
        (
            broken(
                monitor,
                "bad-interval",
                lambda d: d["spec"]["endpoints"][0].update(interval="thirty seconds"),
            ),
            "interval",
        ),
        (
            broken(rule, "bad-rule", lambda d: d["spec"]["groups"][0].update(rules="none")),
            "spec.groups[0].rules",
        ),
    ]
    for doc, field in cases:
        refused = await asyncio.to_thread(kubectl, sandbox, "apply", "-f", "-", docs=[doc])
        assert refused.returncode != 0, (doc["metadata"]["name"], refused.stdout)
        assert field in refused.stderr, (doc["metadata"]["name"], refused.stderr)
