"""Payload sizes of an upgrade of a synthetic mesh, without a cluster or a server.

Builds an inventory of N namespaces x D Deployments x R replicas, plans it with the planning
code the ``plan_cluster`` activity runs, and plays a complete run's progress the way the
workflow records it (every batch restarted, evaluated, passed; per-namespace warnings). Then
measures every payload that grows with the mesh, encoded by the worker's data converter:
the inventory (which stays inside the activity), the activity's result, the ``plan`` and
``progress`` query results, the Web UI details, a continue-as-new input, the workflow's
result, and the largest per-batch activity inputs. Prints a table and writes JSON.

Usage::

    python -m bench.payloads [--namespaces 2000 10000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter

from istio_upgrade.istio.manifests import render_revision, render_tag
from istio_upgrade.istio.support import SUPPORT
from istio_upgrade.models import (
    ClusterInventory,
    NamespaceInfo,
    PodInfo,
    RevisionInfo,
    SupportData,
    UpgradeSpec,
    WebhookInfo,
    WorkloadInfo,
)
from istio_upgrade.models.activities import (
    PlanningResult,
    RelabelInput,
    RestartInput,
    RolloutInput,
    VerifyInput,
)
from istio_upgrade.models.carryover import Carryover
from istio_upgrade.models.gate import GateResult, NamespaceGate
from istio_upgrade.models.injection import effective_revision
from istio_upgrade.models.permissions import permissions_input
from istio_upgrade.models.plan import NamespaceLabels
from istio_upgrade.models.progress import (
    BatchProgress,
    Progress,
    UpgradeResult,
    progress_markdown,
)
from istio_upgrade.planning import plan_upgrade

WARN_BYTES = 512 * 1024
"""Temporal's payload warning (``limit.blobSize.warn``); 2 MiB is the error limit."""
SOURCE, SOURCE_VERSION, TARGET_VERSION = "1-30-3", "1.30.3", "1.31.0"
EVALUATIONS_PER_BATCH = 10
"""A production gate: 300 s of soak evaluated every 30 s."""


def namespace_name(i: int) -> str:
    """Names of a realistic length (25 characters), not ``ns-1``."""
    return f"team-{i % 40:02d}-service-{i:08d}"


def _webhooks() -> list[WebhookInfo]:
    hooks: list[WebhookInfo] = []
    for obj in [*render_revision(SOURCE_VERSION, SOURCE), *render_tag("default", SOURCE)]:
        if obj["kind"] != "MutatingWebhookConfiguration":
            continue
        labels = obj["metadata"].get("labels", {})
        hooks += [
            WebhookInfo(
                configuration=obj["metadata"]["name"],
                name=hook["name"],
                revision=labels.get("istio.io/rev"),
                tag=labels.get("istio.io/tag"),
                namespace_selector=hook.get("namespaceSelector") or {},
                object_selector=hook.get("objectSelector") or {},
            )
            for hook in obj["webhooks"]
        ]
    return hooks


def synthetic_inventory(
    namespaces: int, deployments: int = 5, replicas: int = 2
) -> ClusterInventory:
    """A mesh on revision ``1-30-3``, half its namespaces labelled by revision, half enabled."""
    hooks, tags = _webhooks(), {"default": SOURCE}
    infos = []
    for i in range(namespaces):
        labels = {"istio.io/rev": SOURCE} if i % 2 else {"istio-injection": "enabled"}
        workloads = []
        for d in range(deployments):
            workload = WorkloadInfo(kind="Deployment", name=f"app-{d}", restartable=True)
            for r in range(replicas):
                workload.add_pod(
                    PodInfo(
                        name=f"app-{d}-7c9d8f-{r:05d}",
                        phase="Running",
                        ready=True,
                        injected_revision=SOURCE,
                        proxy_version=SOURCE_VERSION,
                    )
                )
            workloads.append(workload)
        infos.append(
            NamespaceInfo(
                name=namespace_name(i),
                labels=labels,
                effective_revision=effective_revision(labels, hooks, tags),
                workloads=workloads,
            )
        )
    return ClusterInventory(
        cluster="prod-eu-1",
        discovered_at=datetime(2026, 12, 1, tzinfo=UTC),
        revisions=[RevisionInfo(name=SOURCE, version=SOURCE_VERSION, ready=True)],
        tags=tags,
        webhooks=hooks,
        namespaces=infos,
        support=SupportData(
            canary_max_minor_jump=SUPPORT.canary_max_minor_jump,
            ambient_max_minor_jump=SUPPORT.ambient_max_minor_jump,
            kubernetes={m: list(v) for m, v in SUPPORT.kubernetes.items()},
        ),
    )


def production_spec() -> UpgradeSpec:
    """Batches doubling up to 50 namespaces, as the issue's 2,000-namespace probe used."""
    return UpgradeSpec.model_validate(
        {
            "cluster": {"name": "prod-eu-1"},
            "target": {"version": TARGET_VERSION},
            "migration": {"first_batch_size": 1, "growth_factor": 2, "max_batch_size": 50},
        }
    )


def _evaluation(namespaces: list[str], sequence: int, at: datetime) -> GateResult:
    """An evaluation as the gate records it: a verdict per namespace of the batch."""
    return GateResult(
        verdict="PASS",
        reasons=["availability: burn 0.4x of 14.4x allowed over 212 requests; baseline 0.3x"],
        namespaces={
            ns: NamespaceGate(
                namespace=ns,
                verdict="PASS",
                reason="availability: burn 0.4x of 14.4x allowed (212 requests, 0 bad)",
                requests=212.0,
                min_requests=3,
                burn_rates={"availability": 0.4},
                short_burn_rates={"availability": 0.5},
                z_scores={"availability": -0.2},
            )
            for ns in namespaces
        },
        burn_rates={"availability": 0.4},
        baseline_burn_rates={"availability": 0.3},
        allowed_burn={"availability": 14.4},
        evaluated_at=at,
        sequence=sequence,
    )


def played_progress(planned: PlanningResult, workloads_per_namespace: int) -> Progress:
    """The progress at the end of a complete run, bounded the way the workflow bounds it."""
    plan = planned.plan
    progress = Progress(
        upgrade_id=f"istio-upgrade.{plan.cluster}.{plan.target_revision}",
        cluster=plan.cluster,
        source_revision=plan.source_revision,
        target_revision=plan.target_revision,
        batches=[BatchProgress(index=b.index, namespaces=b.namespaces) for b in plan.batches],
        warnings=[f.message for f in planned.report.warnings],
    )
    at = datetime(2026, 12, 1, tzinfo=UTC)
    for batch, bp in zip(plan.batches, progress.batches, strict=True):
        progress.current_batch = batch.index
        bp.restarted = [
            f"{ns}/Deployment/app-{d}"
            for ns in batch.namespaces
            for d in range(workloads_per_namespace)
        ]
        # Per-namespace warnings, as verify reports pods it cannot restart.
        progress.warnings += [
            f"not restartable, keeps its old proxy: {ns}/Pod/job" for ns in batch.namespaces
        ]
        for sequence in range(1, EVALUATIONS_PER_BATCH + 1):
            at += timedelta(seconds=30)
            result = _evaluation(batch.namespaces, sequence, at)
            bp.gate_results.append(result)
            bp.namespace_status.update({ns: g.verdict for ns, g in result.namespaces.items()})
            progress.bound()  # ``UpgradeState.refresh`` after each evaluation
        bp.status = "passed"
        progress.bound()
    return progress


def _size(value: Any) -> int:
    return len(pydantic_data_converter.payload_converter.to_payloads([value])[0].data)


def measure(namespaces: int, deployments: int = 5, replicas: int = 2) -> dict[str, int]:
    """Bytes of every payload of an upgrade of ``namespaces`` namespaces that grows with it."""
    inventory = synthetic_inventory(namespaces, deployments, replicas)
    spec = production_spec()
    plan, report = plan_upgrade(
        inventory, spec, "istio-upgrade.prod-eu-1.1-24-2", per_workload=True
    )
    planned = PlanningResult(plan=plan, report=report, tags=inventory.tags)
    progress = played_progress(planned, deployments)
    handed = progress.model_copy(deep=True)
    for bp in handed.batches:
        bp.namespaces = []  # as ``handover.continue_as_new`` hands it over
    carried = Carryover(
        progress=handed,
        plan=plan,
        report=report,
        original_tags=inventory.tags,
        next_batch=len(plan.batches) // 2,
        uninstall_target_on_rollback=True,
    )
    largest = max(plan.batches, key=lambda b: len(b.namespaces))
    result = UpgradeResult(
        outcome="SUCCEEDED",
        summary="done",
        upgrade_id=progress.upgrade_id,
        target_revision=plan.target_revision,
        migrated_namespaces=plan.namespaces,
        plan=plan,
        precheck=report,
        warnings=list(progress.warnings),
    )
    return {
        "namespaces": namespaces,
        "pods": namespaces * deployments * replicas,
        "batches": len(plan.batches),
        "largest_batch": len(largest.namespaces),
        "inventory (stays in the activity)": _size(inventory),
        "plan_cluster result": _size(planned),
        "plan query": _size(plan),
        "progress query": _size(progress),
        "web ui details": len(progress_markdown(progress).encode()),
        "continue-as-new input": _size(spec) + _size(carried),
        "workflow result": _size(result),
        "check_permissions input": _size(permissions_input(spec, plan, False)),
        "relabel input (every namespace, promote)": _size(
            RelabelInput(
                cluster=spec.cluster,
                labels=[lab for b in plan.batches for lab in b.original_labels],
                skip_missing=True,
            )
        ),
        "relabel input (largest batch)": _size(
            RelabelInput(
                cluster=spec.cluster,
                labels=[
                    NamespaceLabels(namespace=ns, istio_rev="1-31-0") for ns in largest.namespaces
                ],
                batch=largest.index,
            )
        ),
        "restart input (largest batch)": _size(
            RestartInput(cluster=spec.cluster, namespaces=largest.namespaces, stamp="x" * 80)
        ),
        "rollout input (largest batch)": _size(
            RolloutInput(cluster=spec.cluster, namespaces=largest.namespaces, timeout_seconds=600)
        ),
        "verify input (largest batch)": _size(
            VerifyInput(
                cluster=spec.cluster, namespaces=largest.namespaces, expected_revision="1-31-0"
            )
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, nargs="+", default=[200, 2000, 10000])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rows = [measure(n) for n in args.namespaces]
    keys = [k for k in rows[0] if k not in {"namespaces", "pods", "batches", "largest_batch"}]
    print(f"{'payload (bytes)':<42}" + "".join(f"{r['namespaces']:>12,} ns" for r in rows))
    for key in keys:
        cells = "".join(
            f"{r[key]:>12,}{'!' if r[key] > WARN_BYTES and 'inventory' not in key else ' '}  "
            for r in rows
        )
        print(f"{key:<42}{cells}")
    print(f"(! = above Temporal's {WARN_BYTES // 1024} KB payload warning)")
    if args.json:
        args.json.write_text(json.dumps({"warn_bytes": WARN_BYTES, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
