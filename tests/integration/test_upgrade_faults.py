"""Faults: a flaky API server is survived; a stalled rollout is diagnosed and rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from istio_upgrade.models import UpgradeResult
from istio_upgrade.workflows.upgrade import IstioCanaryUpgrade
from tests.integration.upgrade_stack import failure, fast_spec, pod_revisions, upgrade_stack

pytestmark = pytest.mark.slow


async def test_flaky_api_upgrade_completes(
    temporal_local: WorkflowEnvironment, sandbox_factory: Any, prometheus_factory: Any
) -> None:
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, "flaky-api"
    ) as stack:
        spec = fast_spec(stack.prometheus.url, cleanup={"keep_old_revision": True})
        result: UpgradeResult = await (await stack.start(spec)).result()
        assert result.outcome == "SUCCEEDED", result.summary
        assert set(pod_revisions(stack, "frontend").values()) == {"1-31-0"}
        assert set(pod_revisions(stack, "inventory").values()) == {"1-31-0"}


async def test_stalled_rollout_is_diagnosed_and_rolled_back(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "stuck-cart.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "extends": "demo",
                "name": "stuck-cart",
                "faults": {
                    "rollouts": [{"kind": "never_ready", "namespace": "cart", "revision": "1-31-0"}]
                },
            }
        )
    )
    async with upgrade_stack(
        temporal_local.client, sandbox_factory, prometheus_factory, scenario
    ) as stack:
        spec = fast_spec(
            stack.prometheus.url,
            migration={"canary": ["cart"], "rollout_timeout_seconds": 6},
        )
        handle = await stack.start(spec)
        cause = await failure(handle)
        assert cause.type == "RolloutFailed", cause
        assert "cart/Deployment/cart" in cause.message
        progress = await handle.query(IstioCanaryUpgrade.progress)
        assert progress.stragglers and all(s.namespace == "cart" for s in progress.stragglers)
        assert 0 < len(progress.diagnostics) <= 5
        assert any(d.events or d.proxy_log for d in progress.diagnostics)
        assert set(pod_revisions(stack, "cart").values()) == {"1-30-3"}
        labels = stack.get("/api/v1/namespaces/cart")["metadata"]["labels"]
        assert labels.get("istio.io/rev") == "1-30-3"
