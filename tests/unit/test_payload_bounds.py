"""No payload of a 2,000-namespace upgrade reaches Temporal's 512 KB warning.

At 2,000 namespaces the upgrade used to stop for good: discovery's result (the whole
inventory) drew the warning, and in the first soak a workflow task's payloads passed the
2 MB limit (``WorkflowTaskFailedCausePayloadsTooLarge`` on every retry). The figures come
from ``bench.payloads``, which plans a synthetic mesh with the planning code of the
``plan_cluster`` activity and plays a complete run's progress as the workflow bounds it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.payloads import WARN_BYTES, measure
from istio_upgrade.models.gate import GateResult, NamespaceGate
from istio_upgrade.models.plan import Batch, NamespaceLabels
from istio_upgrade.models.progress import MAX_MESSAGES, BatchProgress, Progress


@pytest.fixture(scope="module")
def sizes() -> dict[str, int]:
    return measure(2000)


def test_the_inventory_alone_would_pass_the_warning(sizes: dict[str, int]) -> None:
    # Why discovery and planning run in one activity: its inventory never leaves the worker.
    assert sizes["inventory (stays in the activity)"] > WARN_BYTES


@pytest.mark.parametrize(
    "payload",
    [
        "plan_cluster result",
        "plan query",
        "progress query",
        "web ui details",
        "continue-as-new input",
        "workflow result",
        "check_permissions input",
        "relabel input (every namespace, promote)",
        "relabel input (largest batch)",
        "restart input (largest batch)",
        "rollout input (largest batch)",
        "verify input (largest batch)",
    ],
)
def test_no_payload_of_2000_namespaces_passes_512_kb(sizes: dict[str, int], payload: str) -> None:
    assert sizes[payload] < WARN_BYTES, f"{payload}: {sizes[payload]:,} bytes"


def test_per_batch_inputs_do_not_grow_with_the_mesh() -> None:
    small, large = measure(200), measure(2000)
    for key in small:
        if key.endswith("(largest batch)"):
            assert small[key] == large[key], key


def test_grouped_labels_round_trip_and_old_lists_decode() -> None:
    labels = [
        NamespaceLabels(namespace="a", istio_injection="enabled"),
        NamespaceLabels(namespace="b", istio_injection=""),
        NamespaceLabels(namespace="c", istio_rev="1-30-3"),
        NamespaceLabels(namespace="e", istio_injection="enabled", istio_rev="canary"),
    ]
    batch = Batch(index=3, namespaces=["a", "b", "c", "d", "e"], original_labels=labels)
    encoded = batch.model_dump_json()
    assert '"grouped"' in encoded and '"namespace"' not in encoded
    assert Batch.model_validate_json(encoded) == batch
    # As histories recorded before grouping hold them.
    plain = batch.model_dump(mode="python")
    assert Batch.model_validate(plain) == batch
    # An order the grouping cannot express stays a plain list.
    shuffled = Batch(index=0, namespaces=["a", "b"], original_labels=labels[1::-1])
    assert Batch.model_validate_json(shuffled.model_dump_json()) == shuffled


def _result(sequence: int, verdicts: dict[str, str]) -> GateResult:
    return GateResult(
        verdict="PASS",
        namespaces={
            ns: NamespaceGate(namespace=ns, verdict=v, reason="r")  # type: ignore[arg-type]
            for ns, v in verdicts.items()
        },
        evaluated_at=datetime(2026, 12, 1, tzinfo=UTC),
        sequence=sequence,
    )


def test_an_ended_batch_keeps_counts_and_what_did_not_pass() -> None:
    bp = BatchProgress(index=1, namespaces=["a", "b"], restarted=["a/Deployment/x"] * 7)
    for sequence in range(1, 6):
        bp.gate_results.append(_result(sequence, {"a": "PASS", "b": "INCONCLUSIVE"}))
        bp.bound()
    # While it soaks: its latest evaluations, whole.
    assert [r.sequence for r in bp.gate_results] == [3, 4, 5]
    assert set(bp.gate_results[-1].namespaces) == {"a", "b"} and len(bp.restarted) == 7
    bp.namespace_status = {"a": "PASS", "b": "INCONCLUSIVE"}
    bp.status = "passed"
    bp.bound()
    assert [r.sequence for r in bp.gate_results] == [5] and bp.evaluations == 5
    assert set(bp.gate_results[0].namespaces) == {"b"}
    assert bp.restarted == [] and bp.restarted_count == 7
    assert bp.namespace_status == {"b": "INCONCLUSIVE"}


def test_messages_keep_the_first_and_the_latest() -> None:
    progress = Progress(warnings=[f"w{i}" for i in range(MAX_MESSAGES + 30)])
    progress.bound()
    assert len(progress.warnings) == MAX_MESSAGES and progress.omitted_warnings == 30
    assert progress.warnings[0] == "w0" and progress.warnings[-1] == f"w{MAX_MESSAGES + 29}"
