"""The HTTP API examples of docs/triggers.md, run as written against a dev server and a worker.

The curl commands are parsed from the document and sent with httpx; only the server address,
the cluster (the test's sandbox) and the task queue (the test's worker) are substituted.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.devenv import LocalTemporal
from istio_upgrade.devenv.bundles import revision_bundle
from istio_upgrade.models import UpgradeSpec
from istio_upgrade.models.search import CLUSTER, OUTCOME
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import (
    failure,
    pod_revisions,
    sandbox_kube,
    upgrade_stack,
    wait_progress,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = ROOT / "docs" / "triggers.md"
DOC_ID = "istio-upgrade.demo.1-31-0"


@dataclass
class Curl:
    """One curl command of the document."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None

    @property
    def kind(self) -> str:
        """``start``, ``describe``, ``list``, ``query/progress``, ``signal/signal_abort`` …"""
        path = self.url.split("?")[0]
        if path.endswith("/workflows"):
            return "list"
        tail = path.split(f"/workflows/{DOC_ID}")[1].strip("/")
        if not tail:
            return "start" if self.method == "POST" else "describe"
        return tail


def http_section() -> str:
    text = TRIGGERS.read_text()
    start = text.index("## Temporal's HTTP API")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def parse_curls(section: str) -> list[Curl]:
    commands: list[Curl] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if not command.strip().startswith("curl "):
                continue
            tokens = shlex.split(command)[1:]
            curl = Curl(method="GET", url="")
            i = 0
            while i < len(tokens):
                token = tokens[i]
                if token == "-X":
                    curl.method, i = tokens[i + 1], i + 1
                elif token == "-H":
                    name, _, value = tokens[i + 1].partition(":")
                    curl.headers[name.strip()] = value.strip()
                    i += 1
                elif token in {"--data", "-d"}:
                    curl.data, i = tokens[i + 1], i + 1
                    curl.method = "POST" if curl.method == "GET" else curl.method
                elif not token.startswith("-"):
                    curl.url = token
                i += 1
            commands.append(curl)
    return commands


class DocRunner:
    """Sends the document's commands to the test's server, for the test's cluster and queue."""

    def __init__(self, base: str, cluster: str, task_queue: str, prometheus_url: str) -> None:
        self.base = base
        self.cluster = cluster
        self.task_queue = task_queue
        self.prometheus_url = prometheus_url
        self.upgrade_id = f"istio-upgrade.{cluster}.1-31-0"
        self.commands = {c.kind: c for c in parse_curls(http_section())}

    def body(self, curl: Curl) -> Any:
        if curl.data is None:
            return None
        if curl.data.startswith("@"):
            doc = json.loads((ROOT / curl.data[1:]).read_text())
            doc["taskQueue"]["name"] = self.task_queue
            doc["input"][0]["cluster"] = {
                "name": self.cluster,
                "context": "sandbox",
                "prometheus_url": self.prometheus_url,
            }
            doc["searchAttributes"]["indexedFields"]["IstioCluster"] = self.cluster
            return doc
        return json.loads(curl.data)

    async def __call__(self, kind: str) -> Any:
        curl = self.commands[kind]
        url = (
            curl.url.replace("$TEMPORAL_HTTP", self.base)
            .replace(DOC_ID, self.upgrade_id)
            .replace("%27demo%27", f"%27{self.cluster}%27")
        )
        body = self.body(curl)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.request(
                curl.method,
                url,
                headers=curl.headers,
                content=None if body is None else json.dumps(body),
            )
        assert response.status_code == 200, (kind, response.status_code, response.text)
        return response.json()


def test_http_start_body_input_is_an_upgrade_spec() -> None:
    doc = json.loads((ROOT / "docs" / "examples" / "http-start.json").read_text())
    spec = UpgradeSpec.model_validate(doc["input"][0])
    assert f"istio-upgrade.{spec.cluster.name}.{spec.target_revision}" == DOC_ID
    assert doc["workflowType"]["name"] == "IstioCanaryUpgrade"
    assert doc["taskQueue"]["name"] == "istio-upgrade"


def test_document_has_every_http_example() -> None:
    kinds = {c.kind for c in parse_curls(http_section())}
    assert kinds >= {
        "start",
        "query/progress",
        "update/approve",
        "signal/signal_abort",
        "describe",
        "list",
    }


async def test_http_examples_start_query_approve_abort(
    temporal_dev_server: LocalTemporal,
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
) -> None:
    assert temporal_dev_server.http_url is not None
    client = temporal_local.client
    async with upgrade_stack(client, sandbox_factory, prometheus_factory) as stack:
        run = DocRunner(
            temporal_dev_server.http_url,
            f"http-{uuid.uuid4().hex[:6]}",
            stack.task_queue,
            stack.prometheus.url,
        )
        # What release tooling does first: the rendered revision in the ConfigMap the spec names
        # (kubectl -n istio-system create configmap istiod-1-31-0-bundle --from-file=bundle.yaml).
        sandbox_kube(stack.sandbox).apply({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istiod-1-31-0-bundle", "namespace": "istio-system"},
            "data": {"bundle.yaml": revision_bundle("1.31.0", "1-31-0")},
        })  # fmt: skip
        started = await run("start")
        assert started["started"] is True, started
        again = await run("start")
        assert again["runId"] == started["runId"] and not again.get("started"), again

        handle = client.get_workflow_handle(run.upgrade_id)
        progress = await wait_progress(handle, lambda p: p.waiting_for, "the approval")
        assert progress.waiting_for
        assert progress.waiting_for.startswith("approval: migrate batch 0")

        queried = await run("query/progress")
        assert queried["queryResult"][0]["phase"] == "WAITING_APPROVAL", queried
        assert queried["queryResult"][0]["cluster"] == run.cluster

        approved = await run("update/approve")
        assert approved["outcome"]["success"][0].startswith("approved: migrate batch 0"), approved
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert [(a.approver, a.comment) for a in progress.approvals] == [
            ("release-bot", "canary dashboards green")
        ]
        # Let the canary start moving, then abort it over HTTP: the signal rolls it back.
        for _ in range(100):
            if set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}:
                break
            await asyncio.sleep(0.3)
        await run("signal/signal_abort")
        cause = await failure(handle)
        assert cause.type == "Aborted"
        assert "error budget burning" in cause.message
        assert set(pod_revisions(stack, "frontend").values()) == {"1-30-3"}

        described = await run("describe")
        info = described["workflowExecutionInfo"]
        assert info["status"] == "WORKFLOW_EXECUTION_STATUS_FAILED", info
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(CLUSTER) == run.cluster
        assert attributes.get(OUTCOME) == "ROLLED_BACK"
        # Visibility catches up asynchronously.
        async with asyncio.timeout(10):
            while True:
                listed = await run("list")
                ids = [e["execution"]["workflowId"] for e in listed.get("executions", [])]
                if run.upgrade_id in ids:
                    break
                await asyncio.sleep(0.3)
