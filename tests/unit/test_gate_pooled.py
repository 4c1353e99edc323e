"""The pooled baseline, bounded payloads, quiet namespaces and the error budget spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from istio_upgrade.activities.prometheus import _parse_budget, parse_sli
from istio_upgrade.models.gate import (
    BaselineRef,
    BudgetCounts,
    ControlPlane,
    Counts,
    GateMeasurements,
    GateQuery,
    GateResult,
    GateSpec,
    SLIWindow,
    WindowName,
)
from istio_upgrade.models.plan import Batch, Plan
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.slo import promql
from istio_upgrade.workflows.gate import IDLE, budget_spent, evaluate_gate
from istio_upgrade.workflows.phases.soak import baseline_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = GateSpec()
AVAILABILITY = SLOSpec(name="availability", objective=0.999)


def c(bad: float, total: float) -> Counts:
    return Counts(bad=bad, total=total)


def per_namespace(
    batch: dict[str, Counts],
    baseline: dict[str, Counts],
    edge: dict[str, Counts] | None = None,
    outbound: dict[str, Counts] | None = None,
) -> GateMeasurements:
    """Measurements as recorded before pooling: O's namespaces one by one."""

    def window(name: WindowName) -> SLIWindow:
        return SLIWindow(
            slo="availability",
            window=name,
            window_seconds=120 if name == "since_warmup" else 60,
            inbound={**batch, **baseline},
            edge_old_to_new=edge or {},
            outbound=outbound or {},
        )

    return GateMeasurements(
        batch_namespaces=sorted(batch),
        baseline_namespaces=sorted(baseline),
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0 + timedelta(seconds=120),
        slis=[window("since_warmup"), window("short")],
        queries=["sum(x)"],
    )


def pooled(m: GateMeasurements) -> GateMeasurements:
    """The same measurements as the activity now returns them: O summed into one count."""
    out = m.model_copy(deep=True)
    out.baseline_size = len(m.baseline_namespaces)
    out.baseline_namespaces = []
    out.queries = []
    out.query_count = 4
    for w in out.slis:
        base = [w.inbound.pop(ns) for ns in m.baseline_namespaces if ns in w.inbound]
        if base:
            w.baseline["inbound"] = c(sum(x.bad for x in base), sum(x.total for x in base))
    return out


CASES = {
    "healthy": per_namespace(
        {"a": c(0, 5000), "b": c(1, 5000)}, {"o1": c(2, 20_000), "o2": c(3, 30_000)}
    ),
    "canary burns": per_namespace(
        {"a": c(100, 5000), "b": c(0, 5000)}, {"o1": c(2, 20_000), "o2": c(3, 30_000)}
    ),
    "global incident": per_namespace(
        {"a": c(150, 5000)}, {"o1": c(600, 20_000), "o2": c(900, 30_000)}
    ),
    "relative only": per_namespace({"a": c(8, 5000)}, {"o1": c(0, 40_000), "o2": c(1, 40_000)}),
    "low traffic": per_namespace({"a": c(0, 50)}, {"o1": c(0, 20_000)}),
    "edge and outbound": per_namespace(
        {"a": c(0, 5000)},
        {"o1": c(10, 20_000)},
        edge={"a": c(200, 4000)},
        outbound={"a": c(300, 4000)},
    ),
    "no baseline": per_namespace({"a": c(0, 5000)}, {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_baseline_gives_the_verdicts_of_per_namespace_pooling(name: str) -> None:
    old = CASES[name]
    new = pooled(old)
    results: list[tuple[GateResult, GateResult]] = []
    previous_old: list[GateResult] = []
    previous_new: list[GateResult] = []
    for _ in range(2):  # the second evaluation confirms
        a = evaluate_gate(SPEC, old, previous_old)
        b = evaluate_gate(SPEC, new, previous_new)
        previous_old.append(a)
        previous_new.append(b)
        results.append((a, b))
    for a, b in results:
        assert a.verdict == b.verdict
        assert a.reasons == b.reasons
        assert a.burn_rates == b.burn_rates
        assert a.baseline_burn_rates == b.baseline_burn_rates
        assert {n: g.model_dump() for n, g in a.namespaces.items()} == {
            n: g.model_dump() for n, g in b.namespaces.items()
        }
        assert b.queries == [] and b.query_count == 4


def test_parse_sli_folds_the_pooled_baseline_apart_from_the_batch() -> None:
    series = [
        {"metric": {promql.DEST_NS: "a", "kind": "bad", "view": "inbound"}, "value": [0, "2"]},
        {"metric": {promql.DEST_NS: "a", "kind": "total", "view": "inbound"}, "value": [0, "90"]},
        {"metric": {"kind": "bad", "view": "inbound", "pool": "baseline"}, "value": [0, "7"]},
        {"metric": {"kind": "total", "view": "inbound", "pool": "baseline"}, "value": [0, "900"]},
    ]
    errors: list[str] = []
    w = parse_sli(AVAILABILITY, "since_warmup", 60, series, ["a"], errors)
    assert w.inbound == {"a": c(2, 90)}
    assert w.baseline == {"inbound": c(7, 900)}
    assert errors == []


def names(n: int, prefix: str = "ns") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def test_pooled_query_is_one_per_slo_and_window_whatever_the_baseline() -> None:
    small = promql.sli_query_pooled(AVAILABILITY, names(5, "b"), names(15), "60s")
    large = promql.sli_query_pooled(AVAILABILITY, names(5, "b"), names(1995), "60s")
    # The same sub-queries (B per namespace, the O→B edge, outbound, O pooled): one round trip.
    assert small.count("\n  or ") == large.count("\n  or ")
    assert 'pool", "baseline"' in large


def test_gate_query_with_a_reference_does_not_grow_with_the_baseline() -> None:
    batch = names(50, "batch")

    def query(baseline: list[str], ref: bool) -> GateQuery:
        return GateQuery(
            prometheus_url="http://prometheus:9090",
            slos=[AVAILABILITY.model_copy(update={"alerts": []})] if ref else [AVAILABILITY],
            batch_namespaces=[] if ref else batch,
            baseline_namespaces=[] if ref else baseline,
            new_revision="1-31-0",
            old_revision="1-30-3",
            window_start=T0,
            evaluated_at=T0 + timedelta(seconds=60),
            pre_migration_start=T0 - timedelta(seconds=300),
            pre_migration_end=T0 - timedelta(seconds=40),
            batch_count=45,
            baseline_ref=BaselineRef(
                workflow_id="istio-upgrade.c.1-31-0", run_id="r" * 36, batch_index=10
            )
            if ref
            else None,
            ready_at=T0 - timedelta(seconds=30),
        )

    small = len(query(names(20), True).model_dump_json())
    large = len(query(names(2000), True).model_dump_json())
    inline = len(query(names(2000), False).model_dump_json())
    assert small == large < 1024
    assert inline > 20_000  # what every evaluation recorded before


def measured(batch: list[str], baseline: int, with_traffic: int) -> GateMeasurements:
    """What the activity returns for ``batch`` against a pooled baseline of ``baseline``."""
    traffic = batch[:with_traffic]

    def window(name: WindowName) -> SLIWindow:
        return SLIWindow(
            slo="availability",
            window=name,
            window_seconds=60,
            inbound={ns: c(0, 2400) for ns in traffic},
            outbound={ns: c(1, 1200) for ns in traffic},
            baseline={"inbound": c(12, 240_000)},
        )

    return GateMeasurements(
        batch_namespaces=[],  # the workflow knows its batch; the activity does not echo it
        baseline_namespaces=[],
        baseline_size=baseline,
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0 + timedelta(seconds=60),
        batch_count=45,
        slis=[window("since_warmup"), window("short")],
        request_rate={ns: 40.0 for ns in traffic},
        pre_migration_rate={ns: 40.0 for ns in traffic},
        pre_migration_seconds=300,
        control_plane=ControlPlane(xds_proxies=400, xds_rejects=0, injection_failures=0),
        query_count=5,
        budget=[
            BudgetCounts(
                slo="availability",
                batch_bad=1,
                batch_total=9000,
                batch_seconds=90,
                all_bad=4,
                all_rate=900,
            )
        ],
    )


def sizes(baseline: int, with_traffic: int) -> tuple[int, int]:
    batch = names(50, "batch")
    m = measured(batch, baseline, with_traffic)
    size = len(m.model_dump_json())
    m.batch_namespaces = batch
    result = evaluate_gate(SPEC, m, [], quiet=True)
    return size, len(result.model_dump_json())


def test_measurements_and_results_do_not_grow_with_the_baseline() -> None:
    for serving in (5, 50):
        (m_small, r_small), (m_large, r_large) = sizes(20, serving), sizes(2000, serving)
        assert m_large - m_small <= 2  # the digits of ``baseline_size``, nothing else
        assert r_small == r_large


def test_a_batch_of_fifty_stays_bounded_by_the_batch() -> None:
    # A batch whose namespaces do not serve (or the fixed part): input + result under 2 KB.
    fixed, _ = sizes(2000, 0)
    assert fixed + 1024 < 2048, fixed
    # Each serving namespace of the batch adds its own counts, ~0.2 KB, whatever the mesh.
    m_all, r_all = sizes(2000, 50)
    assert (m_all - fixed) / 50 < 220, m_all
    assert r_all < 50 * 400, r_all


def test_reasons_are_capped() -> None:
    batch = names(50, "batch")
    m = measured(batch, 2000, 50)
    m.batch_namespaces = batch
    for w in m.slis:
        for ns in batch:
            w.inbound[ns] = c(5, 100)  # every namespace below the minimum traffic
    result = evaluate_gate(SPEC, m, [], quiet=True)
    assert result.verdict == "INCONCLUSIVE"
    assert len(result.reasons) == 5 and result.reasons[-1].startswith("and 46 more")


# Quiet namespaces ---------------------------------------------------------------------


def quiet(
    *,
    pre_in: float = 0.0,
    now_in: float = 0.0,
    pre_out: float = 2.0,
    now_out: float = 2.0,
    restarts: float | None = 0.0,
    proxies: float = 10,
    outbound: Counts | None = None,
) -> GateMeasurements:
    """Namespace ``w`` (a batch worker) beside a serving ``a``; missing inbound as recorded."""
    served = {"a": c(0, 5000)}
    inbound = dict(served)
    if now_in:
        inbound["w"] = c(0, now_in * 120)

    def window(name: WindowName) -> SLIWindow:
        return SLIWindow(
            slo="availability",
            window=name,
            window_seconds=120 if name == "since_warmup" else 60,
            inbound=inbound,
            outbound={"w": outbound} if outbound else {},
            baseline={"inbound": c(5, 50_000)},
        )

    errors = (
        []
        if now_in
        else [
            f"no data: SLO availability has no inbound request series for namespace w over the "
            f"last {s} ({n})"
            for s, n in (("120s", "since_warmup"), ("60s", "short"))
        ]
    )
    return GateMeasurements(
        batch_namespaces=["a", "w"],
        baseline_namespaces=[],
        baseline_size=1,
        new_revision="1-31-0",
        old_revision="1-30-3",
        window_start=T0,
        evaluated_at=T0 + timedelta(seconds=120),
        slis=[window("since_warmup"), window("short")],
        request_rate={"a": 40.0, **({"w": now_in} if now_in else {})},
        pre_migration_rate={"a": 40.0, **({"w": pre_in} if pre_in else {})},
        outbound_rate={"w": now_out} if now_out else {},
        pre_migration_outbound_rate={"w": pre_out} if pre_out else {},
        pre_migration_seconds=300,
        restarts={} if restarts is None else {"w": restarts},
        control_plane=ControlPlane(xds_proxies=proxies),
        errors=errors,
        query_count=5,
    )


def test_an_idle_namespace_passes_on_outbound_and_readiness() -> None:
    result = evaluate_gate(SPEC, quiet(), [], quiet=True)
    assert result.verdict == "PASS", result.reasons
    assert IDLE in result.namespaces["w"].reason
    assert "no restarts" in result.namespaces["w"].reason


def test_an_idle_namespace_without_outbound_passes_on_readiness() -> None:
    result = evaluate_gate(SPEC, quiet(pre_out=0, now_out=0), [], quiet=True)
    assert result.verdict == "PASS", result.reasons
    assert "no outbound requests" in result.namespaces["w"].reason


def test_older_upgrades_keep_an_idle_namespace_inconclusive() -> None:
    result = evaluate_gate(SPEC, quiet(), [], quiet=False)
    assert result.verdict == "INCONCLUSIVE"
    assert result.namespaces["w"].verdict == "INCONCLUSIVE"


def test_silence_that_began_with_the_migration_fails_liveness() -> None:
    m = quiet(pre_in=5.0)
    first = evaluate_gate(SPEC, m, [], quiet=True)
    second = evaluate_gate(SPEC, m, [first], quiet=True)
    assert second.verdict == "FAIL"
    assert "liveness" in second.namespaces["w"].signals
    assert "traffic dropped" in second.namespaces["w"].reason


def test_an_idle_namespace_whose_outbound_stopped_fails() -> None:
    m = quiet(pre_out=4.0, now_out=0.0)
    first = evaluate_gate(SPEC, m, [], quiet=True)
    second = evaluate_gate(SPEC, m, [first], quiet=True)
    assert second.verdict == "FAIL"
    assert "outbound traffic dropped" in second.namespaces["w"].reason


def test_an_idle_namespace_that_restarts_fails() -> None:
    m = quiet(restarts=3)
    first = evaluate_gate(SPEC, m, [], quiet=True)
    second = evaluate_gate(SPEC, m, [first], quiet=True)
    assert second.verdict == "FAIL"
    assert "restarted 3 times" in second.namespaces["w"].reason


def test_an_idle_namespace_whose_outbound_fails_fails() -> None:
    m = quiet(outbound=c(60, 1200))
    first = evaluate_gate(SPEC, m, [], quiet=True)
    second = evaluate_gate(SPEC, m, [first], quiet=True)
    assert second.verdict == "FAIL"
    assert "outbound burn" in second.namespaces["w"].reason


def test_an_idle_namespace_without_connected_proxies_is_not_passed() -> None:
    result = evaluate_gate(SPEC, quiet(proxies=0), [], quiet=True)
    assert result.verdict == "INCONCLUSIVE"
    assert "no proxy is connected" in result.namespaces["w"].reason


def test_restarts_not_measured_are_said() -> None:
    result = evaluate_gate(SPEC, quiet(restarts=None), [], quiet=True)
    assert result.verdict == "PASS"
    assert "restarts not measured" in result.namespaces["w"].reason


# Error budget spent ------------------------------------------------------------------


def test_budget_spent_is_burn_rate_times_window_over_period() -> None:
    # 99.9% over 30 days; 2 bad of 10,000 requests in 100 s: ratio 0.02%, burn 0.2;
    # 100 s of a 2,592,000 s period at burn 0.2 spend 0.2 x 100 / 2,592,000 of the budget.
    spent = budget_spent(AVAILABILITY, bad=2, rate=10_000 / 100)
    assert spent == pytest.approx(0.2 * 100 / AVAILABILITY.period_seconds)
    assert budget_spent(AVAILABILITY, bad=5, rate=0) == 0.0


def test_budget_per_batch_and_in_total() -> None:
    m = quiet(now_out=2)
    m.budget = [
        BudgetCounts(
            slo="availability",
            batch_bad=3,
            batch_total=12_000,
            batch_seconds=120,
            all_bad=10,
            all_rate=300,
        )
    ]
    result = evaluate_gate(SPEC, m, [], quiet=True)
    period = AVAILABILITY.period_seconds
    assert result.budget["availability"] == pytest.approx(3 / (0.001 * 100 * period))
    assert result.budget_total["availability"] == pytest.approx(10 / (0.001 * 300 * period))


def test_budget_series_fold_into_the_batch_and_the_total() -> None:
    series = [
        {"metric": {"kind": "bad", "batch": "0"}, "value": [0, "4"]},
        {"metric": {"kind": "total", "batch": "0"}, "value": [0, "6000"]},
        {"metric": {"kind": "bad", "batch": "1"}, "value": [0, "1"]},
        {"metric": {"kind": "total", "batch": "1"}, "value": [0, "3000"]},
    ]
    spans = [(0, ["a"], "300s"), (1, ["b", "c"], "100s")]
    b = _parse_budget(AVAILABILITY, series, spans, current=1)
    assert b is not None
    assert (b.batch_bad, b.batch_total, b.batch_seconds) == (1, 3000, 100)
    assert b.all_bad == 5
    assert b.all_rate == pytest.approx(6000 / 300 + 3000 / 100)


def test_budget_query_has_one_pooled_pair_per_batch() -> None:
    text = promql.budget_query(AVAILABILITY, [(0, ["a"], "300s"), (1, ["b", "c"], "100s")])
    assert text.count('"batch", "0"') == 2 and text.count('"batch", "1"') == 2
    assert 'destination_workload_namespace=~"b|c"' in text


def test_budget_line_for_the_web_ui() -> None:
    from istio_upgrade.models.gate import BudgetSpent, budget_markdown

    line = budget_markdown(
        BudgetSpent(total={"availability": 0.0012}, batches={0: {"availability": 0.0005}})
    )
    assert line == "Error budget spent: availability 0.12% (b0 0.05%)"
    assert budget_markdown(None) == ""


def test_soak_baseline_is_the_later_batches() -> None:
    groups = [["a"], ["b", "c"], ["d"]]
    plan = Plan(
        cluster="c",
        source_revision="1-30-3",
        target_revision="1-31-0",
        target_version="1.31.0",
        batches=[Batch(index=i, namespaces=g) for i, g in enumerate(groups)],
    )
    assert baseline_of(plan, 0) == ["b", "c", "d"]
    assert baseline_of(plan, 2) == []


def test_web_ui_details_show_the_budget_spent() -> None:
    from istio_upgrade.models.gate import BudgetSpent
    from istio_upgrade.models.progress import Progress, progress_markdown

    progress = Progress(
        cluster="c",
        target_revision="1-31-0",
        budget_spent=BudgetSpent(
            total={"availability": 0.002}, batches={0: {"availability": 0.001}}
        ),
    )
    assert "Error budget spent: availability 0.2% (b0 0.1%)" in progress_markdown(progress)


def test_measurements_without_the_batch_never_pass() -> None:
    m = measured(names(5, "batch"), 20, 5)  # batch_namespaces left empty, as the activity does
    result = evaluate_gate(SPEC, m, [], quiet=True)
    assert result.verdict == "INCONCLUSIVE"
    assert result.reasons == ["no namespace of the batch was measured"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_short_window_as_long_as_the_window_is_measured_once(name: str) -> None:
    both = pooled(CASES[name])
    for w in both.slis:
        w.window_seconds = 120  # the short window is capped by the since-warm-up length
    once = both.model_copy(deep=True)
    once.slis = [w for w in once.slis if w.window == "since_warmup"]
    once.short_is_since_warmup = True
    a1 = evaluate_gate(SPEC, both, [])
    b1 = evaluate_gate(SPEC, once, [])
    a2, b2 = evaluate_gate(SPEC, both, [a1]), evaluate_gate(SPEC, once, [b1])
    for a, b in ((a1, b1), (a2, b2)):
        assert (a.verdict, a.reasons) == (b.verdict, b.reasons)
        assert {n: g.model_dump() for n, g in a.namespaces.items()} == {
            n: g.model_dump() for n, g in b.namespaces.items()
        }
