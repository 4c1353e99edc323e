"""What ``watch``/``status`` draw from a progress snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from istio_upgrade.cli.render import batch_step, gate_summary, latest_gate, progress_view
from istio_upgrade.models import BatchProgress, GateResult, Phase, Progress, progress_markdown
from istio_upgrade.models.gate import NamespaceGate, Verdict

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def gate(verdict: Verdict, seq: int, burns: dict[str, float], minute: int) -> GateResult:
    return GateResult(
        verdict=verdict,
        sequence=seq,
        evaluated_at=T0.replace(minute=minute),
        allowed_burn={"availability": 14.4},
        reasons=[f"reason {seq}"],
        namespaces={
            ns: NamespaceGate(
                namespace=ns,
                verdict=verdict,
                reason="",
                burn_rates={"availability": burn},
                z_scores={"availability": 3.14},
            )
            for ns, burn in burns.items()
        },
    )


def render(progress: Progress) -> str:
    console = Console(width=140, record=True, color_system=None)
    console.print(progress_view(progress))
    return console.export_text()


def test_worst_namespace_is_shown_not_the_batch_average() -> None:
    text = gate_summary(gate("FAIL", 4, {"catalog": 0.0, "checkout": 40.0}, 1)).plain
    assert text == "FAIL #4 checkout 40x/14.4 z=3.1"


def test_view_shows_phase_batches_gates_and_what_it_waits_for() -> None:
    progress = Progress(
        upgrade_id="istio-upgrade.prod.1-31-0",
        source_revision="1-30-3",
        target_revision="1-31-0",
        phase=Phase.WAITING_APPROVAL,
        current_batch=1,
        waiting_for="approval: promote",
        batches=[
            BatchProgress(
                index=0,
                namespaces=["accounts"],
                status="passed",
                gate_results=[gate("PASS", 3, {"accounts": 0.5}, 2)],
            ),
            BatchProgress(
                index=1,
                namespaces=["a", "b", "c", "d", "e", "f"],
                status="soaking",
                gate_results=[gate("INCONCLUSIVE", 1, {"a": 0.0}, 3)],
            ),
            BatchProgress(index=2, namespaces=["gw"]),
        ],
        errors=["boom"],
    )
    text = render(progress)
    assert "istio-upgrade.prod.1-31-0  1-30-3 → 1-31-0  WAITING_APPROVAL" in text
    assert "PASS #3 accounts 0.5x/14.4" in text
    assert "▶ 1" in text
    assert "a, b, c, d +2" in text
    assert "waiting for: approval: promote" in text
    assert "gate: reason 1" in text  # the latest evaluation's reason
    assert "error: boom" in text
    assert latest_gate(progress) == progress.batches[1].gate_results[0]


def test_batch_bar_reaches_the_end_when_passed_or_rolled_back() -> None:
    assert batch_step(BatchProgress(index=0, namespaces=["a"])) == 0
    assert batch_step(BatchProgress(index=0, namespaces=["a"], status="soaking")) == 6
    assert batch_step(BatchProgress(index=0, namespaces=["a"], status="passed")) == 7
    assert batch_step(BatchProgress(index=0, namespaces=["a"], status="rolled_back")) == 7


def _at_phase(phase: Phase) -> Progress:
    """A plausible snapshot of an upgrade in ``phase``: three batches, the middle one current."""
    soaking = phase in {Phase.SOAKING, Phase.WAITING_APPROVAL}
    rolled = phase in {Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED}
    middle = "soaking" if soaking else "rolled_back" if rolled else "restarting"
    return Progress(
        upgrade_id="istio-upgrade.prod.1-31-0",
        cluster="prod",
        source_revision="1-30-3",
        target_revision="1-31-0",
        phase=phase,
        paused=phase == Phase.MIGRATING,
        current_batch=1,
        waiting_for="approval: batch 1 gate inconclusive"
        if phase == Phase.WAITING_APPROVAL
        else None,
        batches=[
            BatchProgress(
                index=0,
                namespaces=["frontend"],
                status="rolled_back" if rolled else "passed",
                gate_results=[gate("PASS", 2, {"frontend": 0.2}, 1)],
            ),
            BatchProgress(
                index=1,
                namespaces=["catalog", "checkout"],
                status=middle,
                soak_extended_seconds=60 if soaking else 0,
                gate_results=[gate("INCONCLUSIVE", 1, {"checkout": 1.0}, 2)] if soaking else [],
            ),
            BatchProgress(index=2, namespaces=["istio-ingress"]),
        ],
    )


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_watch_and_web_ui_render_every_phase(phase: Phase) -> None:
    progress = _at_phase(phase)
    text = render(progress)
    assert f"1-30-3 → 1-31-0  {phase.value}" in text
    assert "frontend" in text and "catalog, checkout" in text and "istio-ingress" in text
    assert "▶ 1" in text
    if progress.paused:
        assert "PAUSED" in text
    if progress.waiting_for:
        assert "waiting for: approval: batch 1" in text
    markdown = progress_markdown(progress)
    assert f"phase **{phase.value}**" in markdown
    assert "| ▶ 1 | catalog, checkout |" in markdown
    if phase == Phase.SOAKING:
        assert "soaking (soak +60s)" in markdown


def test_web_ui_details_name_the_run_of_a_continued_upgrade() -> None:
    progress = _at_phase(Phase.SOAKING)
    assert "continued as new" not in progress_markdown(progress)
    progress.runs = 3
    assert "run 3 (continued as new)" in progress_markdown(progress)
