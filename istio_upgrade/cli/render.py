"""Rich renderings of an upgrade's progress for ``status``, ``watch`` and the demo."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from istio_upgrade.models import BatchProgress, GateResult, Phase, Progress

_BATCH_STEPS = [
    "pending",
    "relabeling",
    "restarting",
    "rolling_out",
    "verifying",
    "warming_up",
    "soaking",
    "passed",
]
_PHASE_STYLE = {
    Phase.SUCCEEDED: "bold green",
    Phase.ROLLED_BACK: "bold yellow",
    Phase.FAILED: "bold red",
    Phase.ROLLING_BACK: "yellow",
    Phase.WAITING_APPROVAL: "bold magenta",
    Phase.DRY_RUN: "cyan",
}
_VERDICT_STYLE = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}


def batch_step(batch: BatchProgress) -> int:
    """How far a batch got, 0 (pending) … 7 (passed); rollbacks count as finished."""
    if batch.status in {"failed", "rolling_back", "rolled_back"}:
        return len(_BATCH_STEPS) - 1
    return _BATCH_STEPS.index(batch.status) if batch.status in _BATCH_STEPS else 0


def gate_summary(result: GateResult | None) -> Text:
    """``FAIL #4 checkout 40x/14.4 z=4.3``: verdict, evaluation, the worst namespace's numbers.

    The worst namespace is the one with the highest burn rate since warm-up; a batch average
    would hide one broken namespace among healthy ones.
    """
    if result is None:
        return Text("—", style="dim")
    text = Text(result.verdict, style=_VERDICT_STYLE.get(result.verdict, ""))
    text.append(f" #{result.sequence}")
    worst: tuple[float, str, str] | None = None
    for key, ns in result.namespaces.items():
        for slo, burn in ns.burn_rates.items():
            if worst is None or burn > worst[0]:
                worst = (burn, key, slo)
    if worst is None:
        return text
    burn, namespace, slo = worst
    text.append(f" {namespace} {burn:.2g}x")
    allowed = result.allowed_burn.get(slo)
    if allowed is not None:
        text.append(f"/{allowed:g}")
    z = result.namespaces[namespace].z_scores.get(slo)
    if z is not None:
        text.append(f" z={z:.1f}", style="dim")
    return text


def _namespaces(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit}" if len(names) > limit else "")


def batches_table(progress: Progress) -> Table:
    """One row per batch: namespaces, a step bar, status, last gate evaluation."""
    table = Table(expand=False, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("namespaces")
    table.add_column("progress", width=16)
    table.add_column("status")
    table.add_column("gate")
    for batch in progress.batches:
        bar = ProgressBar(
            total=len(_BATCH_STEPS) - 1,
            completed=batch_step(batch),
            width=16,
            complete_style="red" if batch.status in {"failed", "rolled_back"} else "green",
        )
        last_gate = batch.gate_results[-1] if batch.gate_results else None
        marker = "▶ " if progress.current_batch == batch.index else ""
        table.add_row(
            f"{marker}{batch.index}",
            _namespaces(batch.namespaces),
            bar,
            batch.status,
            gate_summary(last_gate),
        )
    return table


def progress_view(progress: Progress) -> RenderableType:
    """The whole progress screen: header, batches, what the upgrade waits for, problems."""
    header = Text()
    header.append(progress.upgrade_id or "upgrade", style="bold")
    header.append(f"  {progress.source_revision or '?'} → {progress.target_revision}  ")
    header.append(progress.phase.value, style=_PHASE_STYLE.get(progress.phase, "bold cyan"))
    if progress.paused:
        header.append("  PAUSED", style="bold magenta")
    parts: list[RenderableType] = [header]
    if progress.batches:
        parts.append(batches_table(progress))
    if progress.waiting_for:
        parts.append(Text(f"waiting for: {progress.waiting_for}", style="magenta"))
    last = latest_gate(progress)
    if last is not None and last.reasons:
        parts.append(Text(f"gate: {last.reasons[0]}", style="dim"))
    for straggler in progress.stragglers[:5]:
        parts.append(
            Text(f"straggler {straggler.namespace}/{straggler.pod}: {straggler.reason}", "yellow")
        )
    for line in progress.errors[-3:]:
        parts.append(Text(f"error: {line}", style="red"))
    for line in progress.warnings[-3:]:
        parts.append(Text(f"warning: {line}", style="yellow"))
    return Group(*parts)


def latest_gate(progress: Progress) -> GateResult | None:
    """The most recent gate evaluation of any batch."""
    results = [r for b in progress.batches for r in b.gate_results]
    return max(results, key=lambda r: r.evaluated_at) if results else None
