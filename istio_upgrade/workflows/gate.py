"""The safety gate's decision: measurements of one batch → PASS, FAIL or INCONCLUSIVE.

Pure and deterministic (no I/O, no clock): the workflow calls it after every
``measure_gate`` and records the result. The checks, per namespace of the batch B against
the baseline O (namespaces still on the old revision):

* liveness — serving below ``liveness_min_ratio`` of its own pre-migration request rate;
* absolute burn — short *and* since-warm-up windows above the allowed burn rate
  (inbound, and for availability SLOs the O→B edge and B's outbound traffic);
* relative — two-proportion z-test of B vs O, failing only when significant and material;
* a global incident (O burns as much as B) is not the canary's fault → INCONCLUSIVE;
* minimum traffic (rule of three) — too few requests can never PASS.

A failing signal must show on ``confirmations`` consecutive evaluations before the batch
FAILs; new control-plane rejects or injection failures FAIL at once. Missing data is never
PASS.

With ``quiet`` (newer upgrades), a namespace that received no request before its migration
and none since is judged on what it does: its outbound requests (their errors, and a drop
against its own pre-migration outbound rate), its containers' restarts and the new
revision's connected proxies. Silence that began with the migration stays a liveness FAIL.

The baseline comes pooled from the activity (``SLIWindow.baseline``); measurements recorded
before pooling carry O's namespaces one by one, and are pooled here the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.gate import (
        BudgetCounts,
        Counts,
        GateMeasurements,
        GateResult,
        GateSpec,
        NamespaceGate,
        SLIWindow,
        Verdict,
        WindowName,
    )
    from istio_upgrade.models.slo import AvailabilitySLI, SLOSpec


def allowed_burn(spec: GateSpec, slo: SLOSpec, batch_count: int) -> float:
    """The burn rate a batch may sustain for ``slo``.

    With an error-budget fraction F, the whole upgrade (``batch_count`` batches soaking
    ``soak_seconds`` each) may spend F of the period's budget:
    ``F x period / (batch_count x soak)``. Otherwise the SLO's ``burn_rate_threshold``.
    """
    fraction = slo.error_budget_fraction or spec.error_budget_fraction
    if fraction is None or spec.soak_seconds <= 0:
        return slo.burn_rate_threshold
    return fraction * slo.period_seconds / (max(1, batch_count) * spec.soak_seconds)


def min_requests(burn: float, error_budget: float) -> int:
    """Rule of three: with 0 errors in N requests the 95% upper bound of the error ratio
    is 3/N, so N must reach ``3 / (burn x budget)`` before a clean window proves anything."""
    # Rounding first keeps 3 / 0.0144 from becoming 208.33…4 → 209 by float noise alone.
    return max(1, math.ceil(round(3.0 / (burn * error_budget), 6)))


def z_score(batch: Counts, baseline: Counts) -> float:
    """One-sided two-proportion z statistic of B's error ratio above O's (0 when undefined)."""
    if batch.total <= 0 or baseline.total <= 0:
        return 0.0
    pooled = (batch.bad + baseline.bad) / (batch.total + baseline.total)
    variance = pooled * (1.0 - pooled) * (1.0 / batch.total + 1.0 / baseline.total)
    if variance <= 0:
        return 0.0
    return (batch.ratio - baseline.ratio) / math.sqrt(variance)


def poisson_tail(observed: float, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected): how surprising ``observed`` errors are."""
    k = math.floor(observed)
    if k <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    term = math.exp(-expected)
    below = 0.0
    for i in range(k):
        below += term
        term *= expected / (i + 1)
    return max(0.0, 1.0 - below)


SURPRISE_P = 0.01
"""Below the minimum traffic, errors must be this unlikely at the allowed burn to FAIL."""


def _pool(counts: dict[str, Counts], namespaces: list[str]) -> Counts | None:
    present = [counts[ns] for ns in namespaces if ns in counts]
    if not present:
        return None
    return Counts(bad=sum(c.bad for c in present), total=sum(c.total for c in present))


def baseline_counts(window: SLIWindow, m: GateMeasurements, view: str = "inbound") -> Counts | None:
    """O's requests over ``window``: pooled by the activity, else from per-namespace counts."""
    pooled = window.baseline.get(view)
    if pooled is not None:
        return pooled
    return _pool(getattr(window, view), m.baseline_namespaces)


def budget_spent(slo: SLOSpec, bad: float, rate: float) -> float:
    """Share of ``slo``'s period budget that ``bad`` requests are, at ``rate`` requests/s.

    The period's budget is ``(1 - objective) x rate x period`` requests; spent = bad / that
    (= burn rate x window / period for one window).
    """
    allowed = slo.error_budget * rate * slo.period_seconds
    return bad / allowed if allowed > 0 else 0.0


def budget_figures(
    slos: list[SLOSpec], counts: list[BudgetCounts]
) -> tuple[dict[str, float], dict[str, float]]:
    """(this batch, every batch so far) → SLO name → fraction of the period's budget spent."""
    by_name = {slo.name: slo for slo in slos}
    batch: dict[str, float] = {}
    total: dict[str, float] = {}
    for c in counts:
        slo = by_name.get(c.slo)
        if slo is None:
            continue
        if c.batch_seconds > 0:
            batch[c.slo] = budget_spent(slo, c.batch_bad, c.batch_total / c.batch_seconds)
        total[c.slo] = budget_spent(slo, c.all_bad, c.all_rate)
    return batch, total


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.3g}%"


def _n(count: float) -> str:
    """Request counts from ``increase()`` are extrapolated: show whole requests."""
    return f"{count:.0f}" if count >= 10 else f"{count:.2g}"


def _burn(value: float) -> str:
    return f"{value:.3g}x"


@dataclass
class _Namespace:
    """What one evaluation found about one namespace, before confirmation."""

    name: str
    signals: dict[str, str] = field(default_factory=dict)
    """Failing signal → sentence."""
    inconclusive: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    gate: NamespaceGate | None = None


@dataclass
class _Context:
    spec: GateSpec
    m: GateMeasurements
    windows: dict[tuple[str, WindowName], SLIWindow]
    allowed: dict[str, float]
    quiet: bool = False


def _short_window(ctx: _Context, slo: SLOSpec) -> SLIWindow | None:
    found = ctx.windows.get((slo.name, "short"))
    if found is None and ctx.m.short_is_since_warmup:
        return ctx.windows.get((slo.name, "since_warmup"))
    return found


def _view_check(
    ctx: _Context,
    ns: _Namespace,
    slo: SLOSpec,
    view: str,
    baseline: Counts | None,
) -> None:
    """Absolute burn of the O→B edge or of B's outbound traffic (availability only)."""
    long_w = ctx.windows.get((slo.name, "since_warmup"))
    short_w = _short_window(ctx, slo)
    if long_w is None or short_w is None:
        return
    long_c = getattr(long_w, view).get(ns.name)
    short_c = getattr(short_w, view).get(ns.name)
    threshold = ctx.allowed[slo.name]
    if long_c is None or short_c is None:
        return
    if long_c.total < min_requests(threshold, slo.error_budget):
        return
    burn_long = long_c.ratio / slo.error_budget
    burn_short = short_c.ratio / slo.error_budget
    if burn_long <= threshold or burn_short <= threshold:
        return
    label = "requests from old-revision namespaces" if view == "edge_old_to_new" else "outbound"
    if (
        baseline is not None
        and baseline.total > 0
        and baseline.ratio * ctx.spec.min_relative_ratio >= long_c.ratio
    ):
        ns.inconclusive.append(
            f"{ns.name}: {label} fail at {_pct(long_c.ratio)} (burn {_burn(burn_long)}) "
            f"but the baseline fails as much ({_pct(baseline.ratio)}): a global incident"
        )
        return
    ns.signals[f"{view}:{slo.name}"] = (
        f"{ns.name}: {label} burn {slo.name} at {_burn(burn_long)} since warm-up and "
        f"{_burn(burn_short)} over {short_w.window_seconds:g}s "
        f"({_n(long_c.bad)}/{_n(long_c.total)} bad), above {_burn(threshold)}"
    )


def _slo_check(ctx: _Context, ns: _Namespace, slo: SLOSpec, gate: NamespaceGate) -> None:
    spec = ctx.spec
    long_w = ctx.windows.get((slo.name, "since_warmup"))
    short_w = _short_window(ctx, slo)
    counts = long_w.inbound.get(ns.name) if long_w else None
    if long_w is None or counts is None:
        ns.inconclusive.append(f"{ns.name}: no data for SLO {slo.name}")
        return
    budget = slo.error_budget
    threshold = ctx.allowed[slo.name]
    n_min = min_requests(threshold, budget)
    gate.min_requests = max(gate.min_requests, n_min)
    if slo is spec.slos[0]:
        gate.requests = counts.total
    burn_long = counts.ratio / budget
    gate.burn_rates[slo.name] = burn_long
    short = short_w.inbound.get(ns.name) if short_w else None
    burn_short = short.ratio / budget if short is not None else None
    if burn_short is not None:
        gate.short_burn_rates[slo.name] = burn_short
    baseline = baseline_counts(long_w, ctx.m)

    if isinstance(slo.sli, AvailabilitySLI):
        for view in ("edge_old_to_new", "outbound"):
            _view_check(ctx, ns, slo, view, baseline)

    relative_fail = False
    if baseline is not None and baseline.total > 0:
        z = z_score(counts, baseline)
        gate.z_scores[slo.name] = z
        ratio_of_ratios = (
            counts.ratio / baseline.ratio if baseline.ratio > 0 else math.inf if counts.bad else 1.0
        )
        material = (
            ratio_of_ratios >= spec.min_relative_ratio
            and counts.ratio - baseline.ratio >= spec.min_absolute_diff_budgets * budget
        )
        if z >= spec.z_threshold and material:
            relative_fail = True
            ns.signals[f"relative:{slo.name}"] = (
                f"{ns.name}: {slo.name} error ratio {_pct(counts.ratio)} "
                f"({_n(counts.bad)}/{_n(counts.total)}) vs baseline {_pct(baseline.ratio)} "
                f"({_n(baseline.bad)}/{_n(baseline.total)}): z={z:.2f} ≥ {spec.z_threshold:g}, "
                + (
                    f"{ratio_of_ratios:.3g}x the baseline"
                    if math.isfinite(ratio_of_ratios)
                    else "against an error-free baseline"
                )
            )

    above = burn_long > threshold and burn_short is not None and burn_short > threshold
    if above and counts.total < n_min:
        # Few requests: a handful of errors may be chance, so demand they be surprising.
        above = poisson_tail(counts.bad, threshold * budget * counts.total) < SURPRISE_P
    if above:
        global_incident = (
            baseline is not None
            and baseline.total > 0
            and baseline.ratio * spec.min_relative_ratio >= counts.ratio
        )
        if global_incident and baseline is not None:
            ns.inconclusive.append(
                f"{ns.name}: {slo.name} burns {_burn(burn_long)} but the baseline burns "
                f"{_burn(baseline.ratio / budget)} too ({_pct(baseline.ratio)} errors): "
                "a global incident, not the new revision"
            )
            return
        ns.signals[f"burn:{slo.name}"] = (
            f"{ns.name}: {slo.name} burns {_burn(burn_long)} since warm-up "
            f"({_n(counts.bad)}/{_n(counts.total)} bad over {long_w.window_seconds:g}s) and "
            f"{_burn(burn_short or 0.0)} over the short "
            f"{short_w.window_seconds if short_w else 0:g}s window, "
            f"above the allowed {_burn(threshold)}"
        )
        return
    if counts.total < n_min and not relative_fail:
        ns.inconclusive.append(
            f"{ns.name}: only {_n(counts.total)} requests for {slo.name} since warm-up; "
            f"{n_min} are needed before a clean window proves a burn below {_burn(threshold)}"
        )
        return
    if burn_short is None:
        ns.inconclusive.append(f"{ns.name}: no short-window data for SLO {slo.name}")
        return
    ns.passes.append(
        f"{ns.name}: {slo.name} burn {_burn(burn_long)} ≤ {_burn(threshold)} over "
        f"{_n(counts.total)} requests"
    )


def _liveness(ctx: _Context, ns: _Namespace) -> None:
    pre = ctx.m.pre_migration_rate.get(ns.name)
    if pre is None or pre <= 0:
        return
    # Both rates come from one query, so a pre-migration rate without a current one means the
    # namespace stopped serving altogether — the strongest drop, not missing data.
    now = ctx.m.request_rate.get(ns.name, 0.0)
    if now < ctx.spec.liveness_min_ratio * pre:
        ns.signals["liveness"] = (
            f"{ns.name}: serves {now:.3g} req/s, {_pct(now / pre)} of its pre-migration "
            f"{pre:.3g} req/s (minimum {_pct(ctx.spec.liveness_min_ratio)}): traffic dropped"
        )


IDLE = "idle before and after: judged on outbound and readiness"


def _idle(ctx: _Context, name: str) -> bool:
    """No inbound request in the pre-migration window nor since warm-up (a worker, an agent,
    a CronJob): a namespace quiet by nature, not one the migration silenced."""
    m = ctx.m
    if not ctx.quiet or m.pre_migration_seconds is None:
        return False
    if m.pre_migration_rate.get(name, 0.0) > 0 or m.request_rate.get(name, 0.0) > 0:
        return False
    for w in m.slis:
        counts = w.inbound.get(name)
        if counts is not None and counts.total > 0:
            return False
    return True


def _judge_idle(ctx: _Context, ns: _Namespace) -> None:
    """Outbound traffic, restarts and connected proxies of an idle namespace."""
    m, spec = ctx.m, ctx.spec
    pre = m.pre_migration_outbound_rate.get(ns.name, 0.0)
    now = m.outbound_rate.get(ns.name, 0.0)
    if pre > 0 and now < spec.liveness_min_ratio * pre:
        ns.signals["liveness:outbound"] = (
            f"{ns.name}: idle inbound, sends {now:.3g} req/s, {_pct(now / pre)} of its "
            f"pre-migration {pre:.3g} req/s: outbound traffic dropped"
        )
    restarts = m.restarts.get(ns.name)
    if restarts is not None and restarts >= 1:
        ns.signals["restarts"] = (
            f"{ns.name}: containers restarted {restarts:.0f} times since the window opened"
        )
    for slo in spec.slos:
        if isinstance(slo.sli, AvailabilitySLI):
            long_w = ctx.windows.get((slo.name, "since_warmup"))
            base = baseline_counts(long_w, m) if long_w is not None else None
            _view_check(ctx, ns, slo, "outbound", base)
    proxies = m.control_plane.xds_proxies
    if not proxies:
        ns.inconclusive.append(
            f"{ns.name}: {IDLE}, but no proxy is connected to revision {m.new_revision}"
        )
        return
    seen = f"outbound {now:.3g} req/s" if now > 0 else "no outbound requests"
    restarted = "no restarts" if restarts is not None else "restarts not measured"
    ns.passes.append(f"{ns.name}: {IDLE} ({seen}, {restarted}, {proxies:.0f} proxies connected)")


def _confirmed(signal: str, ns: str, previous: list[GateResult], needed: int) -> bool:
    """Whether ``signal`` also showed on the ``needed - 1`` evaluations just before."""
    earlier = previous[len(previous) - (needed - 1) :] if needed > 1 else []
    if len(earlier) < needed - 1:
        return False
    return all(ns in r.namespaces and signal in r.namespaces[ns].signals for r in earlier)


def _judge(ns: _Namespace, previous: list[GateResult], needed: int) -> NamespaceGate:
    gate = ns.gate or NamespaceGate(namespace=ns.name, verdict="INCONCLUSIVE", reason="")
    gate.signals = sorted(ns.signals)
    confirmed = [s for s in gate.signals if _confirmed(s, ns.name, previous, needed)]
    if confirmed:
        gate.verdict = "FAIL"
        gate.reason = "; ".join(ns.signals[s] for s in confirmed)
    elif ns.signals:
        seen = 1 + max(_streak(s, ns.name, previous) for s in ns.signals)
        gate.verdict = "INCONCLUSIVE"
        gate.reason = (
            "; ".join(ns.signals.values()) + f" (seen on {seen} of {needed} consecutive "
            "evaluations needed to fail)"
        )
    elif ns.inconclusive:
        gate.verdict = "INCONCLUSIVE"
        gate.reason = "; ".join(ns.inconclusive)
    else:
        gate.verdict = "PASS"
        gate.reason = "; ".join(ns.passes) or f"{ns.name}: healthy"
    return gate


def _streak(signal: str, ns: str, previous: list[GateResult]) -> int:
    count = 0
    for r in reversed(previous):
        if ns in r.namespaces and signal in r.namespaces[ns].signals:
            count += 1
        else:
            break
    return count


def _control_plane(m: GateMeasurements) -> list[str]:
    cp = m.control_plane
    found = []
    for value, what in (
        (cp.xds_rejects, "pilot_total_xds_rejects"),
        (cp.injection_failures, "sidecar_injection_failure_total"),
    ):
        if value is not None and value > 0:
            found.append(
                f"control plane: {what} of revision {m.new_revision} rose by {value:.3g} "
                f"over the last {cp.window_seconds:g}s"
            )
    return found


def evaluate_gate(
    spec: GateSpec, m: GateMeasurements, previous: list[GateResult], quiet: bool = False
) -> GateResult:
    """Decide one evaluation of a batch.

    Args:
        spec: The gate's configuration.
        m: What ``measure_gate`` returned for this evaluation.
        previous: Earlier results for the same batch, oldest first (for confirmation).
        quiet: Judge namespaces idle before and after their migration on outbound traffic
            and readiness (upgrades recorded before this keep INCONCLUSIVE).

    Returns:
        The verdict with one reason per decisive finding, per-namespace details, burn
        rates and the PromQL that produced the numbers.
    """
    windows = {(w.slo, w.window): w for w in m.slis}
    allowed = {slo.name: allowed_burn(spec, slo, m.batch_count) for slo in spec.slos}
    ctx = _Context(spec=spec, m=m, windows=windows, allowed=allowed, quiet=quiet)

    gates: dict[str, NamespaceGate] = {}
    idle: set[str] = set()
    for name in m.batch_namespaces:
        ns = _Namespace(name=name)
        ns.gate = NamespaceGate(namespace=name, verdict="INCONCLUSIVE", reason="")
        if _idle(ctx, name):
            idle.add(name)
            _judge_idle(ctx, ns)
        else:
            _liveness(ctx, ns)
            for slo in spec.slos:
                _slo_check(ctx, ns, slo, ns.gate)
        gates[name] = _judge(ns, previous, spec.confirmations)
    # "No inbound series" is the expected state of an idle namespace, not missing data.
    errors = [e for e in m.errors if not any(_missing_inbound(e, ns) for ns in idle)]

    burn_rates: dict[str, float] = {}
    baseline_burn_rates: dict[str, float] = {}
    for slo in spec.slos:
        long_w = windows.get((slo.name, "since_warmup"))
        if long_w is None:
            continue
        batch = _pool(long_w.inbound, m.batch_namespaces)
        base = baseline_counts(long_w, m)
        if batch is not None:
            burn_rates[slo.name] = batch.ratio / slo.error_budget
        if base is not None:
            baseline_burn_rates[slo.name] = base.ratio / slo.error_budget

    control = _control_plane(m)
    failing = [g for g in gates.values() if g.verdict == "FAIL"]
    unsure = [g for g in gates.values() if g.verdict == "INCONCLUSIVE"]
    verdict: Verdict
    if control or failing:
        verdict = "FAIL"
        reasons = control + [g.reason for g in failing]
    elif unsure or errors:
        verdict = "INCONCLUSIVE"
        reasons = [g.reason for g in unsure] + errors
    elif not gates:
        verdict = "INCONCLUSIVE"
        reasons = ["no namespace of the batch was measured"]
    else:
        verdict = "PASS"
        summary = ", ".join(
            f"{name} burn {_burn(rate)} ≤ {_burn(allowed[name])}"
            for name, rate in burn_rates.items()
        )
        reasons = [
            f"all {len(gates)} namespaces healthy since warm-up: {summary}"
            if summary
            else f"all {len(gates)} namespaces healthy"
        ]
        if idle:
            reasons.append(f"{len(idle)} of them {IDLE}: {', '.join(sorted(idle)[:5])}")
    budget, budget_total = budget_figures(spec.slos, m.budget)
    if m.query_count is not None:
        reasons = _short(reasons)
    return GateResult(
        verdict=verdict,
        reasons=reasons,
        namespaces=gates,
        burn_rates=burn_rates,
        baseline_burn_rates=baseline_burn_rates,
        allowed_burn=allowed,
        evaluated_at=m.evaluated_at,
        queries=list(m.queries),
        sequence=len(previous) + 1,
        query_count=m.query_count,
        budget=budget,
        budget_total=budget_total,
    )


MAX_REASONS = 5
"""Reasons kept in a result; each namespace's own reason stays in ``namespaces``."""


def _short(reasons: list[str]) -> list[str]:
    """At most ``MAX_REASONS`` reasons: a result must not grow with a batch's troubles."""
    if len(reasons) <= MAX_REASONS:
        return reasons
    more = len(reasons) - (MAX_REASONS - 1)
    return [*reasons[: MAX_REASONS - 1], f"and {more} more (see the namespaces' reasons)"]


def _missing_inbound(error: str, namespace: str) -> bool:
    return error.startswith("no data: SLO ") and f" for namespace {namespace} over " in error
