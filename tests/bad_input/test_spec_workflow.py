"""Entry point 3: the workflow started with a raw JSON object, as the Web UI's Start Workflow
form, ``temporal workflow start`` or Temporal's HTTP API deliver it — against the dev server, a
worker and the sandbox. Every case fails the workflow (never leaves it retrying) with a message
naming the field, and the sandbox counts zero writes."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, FailureError

from istio_upgrade.devenv.bundles import crds_bundle
from istio_upgrade.workflows.upgrade import WORKFLOW_NAME
from tests.bad_input.conftest import SharedCluster, assert_explains
from tests.bad_input.corpus import BASE_SPEC, BUNDLE, NO_CANARY, SPEC_CASES, Case, param, spec

pytestmark = pytest.mark.bad_input

ENDS_WITHIN_S = 60.0
"""A refused input ends the workflow in its first tasks; one still running after this long is
stuck (a workflow task failing and retrying), which is itself the bug."""


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


async def start(shared: SharedCluster, raw: Any, name: str) -> WorkflowHandle[Any, Any]:
    return await shared.client.start_workflow(
        WORKFLOW_NAME,
        raw,
        id=f"bad-input.{name}.{uuid.uuid4().hex[:8]}",
        task_queue=shared.task_queue,
    )


async def failure_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, str]:
    """The type of the workflow's ApplicationError and every message of its cause chain."""
    try:
        result = await asyncio.wait_for(handle.result(), timeout=ENDS_WITHIN_S)
    except WorkflowFailureError as error:
        messages, kind = [], ""
        cause: BaseException | None = error.cause
        while cause is not None:
            if isinstance(cause, FailureError):
                messages.append(cause.message)
            if isinstance(cause, ApplicationError) and not kind:
                kind = cause.type or ""
            cause = cause.__cause__
        return kind, "\n".join(messages)
    except TimeoutError:
        await handle.terminate("bad-input test: still running")
        pytest.fail(f"the workflow did not end within {ENDS_WITHIN_S:g}s (stuck retrying?)")
    pytest.fail(f"the workflow succeeded: {result}")


async def test_the_base_spec_dry_runs_without_writes(shared_cluster: SharedCluster) -> None:
    """The harness works: the valid base passes validation and the precheck in the worker."""
    shared_cluster.reset()
    handle = await start(shared_cluster, {**BASE_SPEC, "dry_run": True}, "base")
    result = await asyncio.wait_for(handle.result(), timeout=ENDS_WITHIN_S)
    assert result["outcome"] == "DRY_RUN", result["summary"]
    assert shared_cluster.writes() == 0


@pytest.mark.parametrize("case", [param(c) for c in SPEC_CASES])
async def test_the_workflow_refuses(shared_cluster: SharedCluster, case: Case) -> None:
    shared_cluster.reset()
    kind, message = await failure_of(await start(shared_cluster, case.doc, case.id))
    assert kind == "InvalidSpec", message
    # JSON has no NaN or Infinity: they arrive as null, refused as "not a number" instead.
    assert_explains(message, case, fix=_finite(case.doc))
    assert shared_cluster.writes() == 0


@pytest.mark.parametrize(
    "raw", ["istio 1.31.0", [], None, 42], ids=["string", "list", "null", "number"]
)
async def test_an_input_that_is_no_object_is_invalid(
    shared_cluster: SharedCluster, raw: Any
) -> None:
    shared_cluster.reset()
    kind, message = await failure_of(await start(shared_cluster, raw, "not-an-object"))
    assert kind == "InvalidSpec", message
    assert "UpgradeSpec" in message
    assert shared_cluster.writes() == 0


PRECHECK: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("batch-ghost", spec(NO_CANARY, ("migration.batches", [["frontend"], ["ghost"]])),
     "PrecheckFailed", ("migration.batches[1]", "ghost")),
    ("canary-ghost", spec(("migration.canary", ["ghost"])), "PrecheckFailed",
     ("migration.canary", "ghost")),
    ("source-not-installed", spec(("source_revision", "9-9-9")), "PrecheckFailed",
     ("source_revision", "omit it")),
    ("skew-three-minors", spec(("target.version", "1.34.0")), "PrecheckFailed",
     ("target.version", "minor")),
    ("same-version", spec(("target", {"version": "1.30.3", "revision": "again"})),
     "PrecheckFailed", ("target.version", "already running")),
    ("downgrade", spec(("target.version", "1.29.0")), "PrecheckFailed",
     ("target.version", "older")),
    ("target-is-installed", spec(("target", {"version": "1.31.0", "revision": "1-30-3"})),
     "PrecheckFailed", ("target.revision", "new name")),
    ("selector-matches-nothing", spec(("migration.selector", "team=nobody"),
                                      ("migration.canary", [])),
     "PrecheckFailed", ("migration.selector",)),
    ("no-bundle", spec(("installer", {})), "PrecheckFailed",
     ("installer.bundle_path", "helm template istiod")),
    ("bundle-path-absent", spec(("installer", {"bundle_path": "/nonexistent/istiod.yaml"})),
     "PrecheckFailed", ("installer.bundle_path", "mount the bundle")),
    ("bundle-configmap-absent",
     spec(("installer", {"bundle_configmap": {"namespace": "istio-system", "name": "nope"}})),
     "PrecheckFailed", ("installer.bundle_configmap", "create it")),
    ("bundle-not-kubernetes", spec(("installer", {"bundle_yaml": "just: text\n"})),
     "PrecheckFailed", ("installer", "apiVersion, kind and metadata")),
    ("bundle-with-crds", spec(("installer", {"bundle_yaml": BUNDLE + crds_bundle()})),
     "PrecheckFailed", ("CustomResourceDefinition/", "nothing was applied")),
    ("crds-holding-a-revision", spec(("crds", {"bundle_yaml": BUNDLE})), "PrecheckFailed",
     ("crds", "nothing was applied")),
    ("unknown-context", spec(("cluster.context", "no-such-context")), "KubeconfigError",
     ("cluster.context",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "kind", "needles"), [pytest.param(d, k, n, id=i) for i, d, k, n in PRECHECK]
)
async def test_what_only_the_cluster_can_tell_is_refused_before_any_write(
    shared_cluster: SharedCluster, doc: dict[str, Any], kind: str, needles: tuple[str, ...]
) -> None:
    """Valid specs the cluster contradicts: refused by the precheck, still before any write."""
    shared_cluster.reset()
    found, message = await failure_of(await start(shared_cluster, doc, "precheck"))
    assert found == kind, message
    for needle in needles:
        assert needle in message, message
    assert shared_cluster.writes() == 0
