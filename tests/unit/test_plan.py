"""Planning and precheck, on hand-built inventories (pure: no cluster, no server)."""

from __future__ import annotations

import pytest

from istio_upgrade.models import PodInfo, RevisionInfo, WebhookInfo, WorkloadInfo
from istio_upgrade.planning import effective_revision, plan_upgrade, source_revision_of
from tests.unit.plan_fixtures import ENABLED, REV, deployment, inventory, spec


def codes(report: object) -> list[str]:
    return [f.code for f in report.findings]  # type: ignore[attr-defined]


def names(plan: object) -> list[list[str]]:
    return [b.namespaces for b in plan.batches]  # type: ignore[attr-defined]


def test_effective_revision_follows_webhooks_and_precedence() -> None:
    inv = inventory({"a": ENABLED}, tags={"default": "1-30-3", "canary": "1-30-3"})
    hooks, tags = inv.webhooks, inv.tags
    assert effective_revision(ENABLED, hooks, tags) == "1-30-3"
    assert effective_revision({"istio.io/rev": "canary"}, hooks, tags) == "1-30-3"
    assert effective_revision({"istio.io/rev": "1-30-3"}, hooks, tags) == "1-30-3"
    assert effective_revision({"istio.io/rev": "nope"}, hooks, tags) is None
    assert effective_revision({"istio-injection": "disabled"}, hooks, tags) is None
    assert effective_revision({}, hooks, tags) is None
    # istio-injection beats istio.io/rev: the revision webhook requires it absent.
    both = {"istio-injection": "enabled", "istio.io/rev": "other"}
    assert effective_revision(both, hooks, tags) == "1-30-3"


def test_effective_revision_without_webhooks_uses_labels() -> None:
    tags = {"default": "1-29-0"}
    assert effective_revision(ENABLED, [], tags) == "1-29-0"
    assert effective_revision({"istio.io/rev": "default"}, [], tags) == "1-29-0"
    assert effective_revision({"istio.io/rev": "1-30-3"}, [], tags) == "1-30-3"
    assert (
        effective_revision({"istio-injection": "disabled", "istio.io/rev": "x"}, [], tags) is None
    )


def test_auto_batches_canary_first_then_geometric_growth_capped() -> None:
    nss = {f"ns{i:02d}": dict(REV) for i in range(12)}
    inv = inventory(nss)
    plan, report = plan_upgrade(
        inv,
        spec(migration={"canary": ["ns05"], "growth_factor": 2, "max_batch_size": 4}),
        "wf",
    )
    assert report.ok, report.findings
    assert names(plan) == [
        ["ns05"],
        ["ns00", "ns01"],
        ["ns02", "ns03", "ns04", "ns06"],
        ["ns07", "ns08", "ns09", "ns10"],
        ["ns11"],
    ]
    assert plan.batches[0].canary and not plan.batches[1].canary


def test_auto_batches_without_canary_start_with_first_batch_size() -> None:
    inv = inventory({f"n{i}": dict(ENABLED) for i in range(7)})
    plan, _ = plan_upgrade(inv, spec(migration={"first_batch_size": 2, "growth_factor": 1.5}), "w")
    assert [len(b) for b in names(plan)] == [2, 3, 2]


def test_gateway_namespaces_go_last() -> None:
    inv = inventory({"ingress": ENABLED, "a": ENABLED, "b": REV}, gateways=("ingress",))
    plan, _ = plan_upgrade(inv, spec(migration={"growth_factor": 5}), "w")
    assert names(plan) == [["a"], ["b"], ["ingress"]]
    assert plan.batches[-1].gateway
    plan2, _ = plan_upgrade(inv, spec(migration={"growth_factor": 5, "gateways_last": False}), "w")
    assert not any(b.gateway for b in plan2.batches)
    assert "ingress" in plan2.batches[1].namespaces


def test_namespaces_without_injection_or_on_other_revisions_are_excluded_with_reasons() -> None:
    inv = inventory(
        {
            "a": ENABLED,
            "plain": {},
            "off": {"istio-injection": "disabled"},
            "kube-system": ENABLED,
            "done": {"istio.io/rev": "1-31-0"},
        },
        extra_revisions=[RevisionInfo(name="1-31-0", version="1.31.0", installed_by="wf")],
    )
    plan, report = plan_upgrade(inv, spec(), "wf")
    excluded = {e.namespace: e.reason for e in plan.excluded}
    assert names(plan) == [["a"]]
    assert "no sidecar injection" in excluded["plain"]
    assert "no sidecar injection" in excluded["off"]
    assert "system namespace" in excluded["kube-system"]
    assert set(excluded) == {"plain", "off", "kube-system", "done"}
    assert report.ok and report.resumed


def test_selector_include_exclude() -> None:
    inv = inventory(
        {
            "a": {**ENABLED, "team": "x"},
            "b": {**ENABLED, "team": "y"},
            "c": ENABLED,
            "d": {**REV, "team": "x"},
        }
    )
    plan, _ = plan_upgrade(
        inv,
        spec(migration={"selector": "team in (x)", "include": ["c"], "exclude": ["d"]}),
        "w",
    )
    assert sorted(plan.namespaces) == ["a", "c"]


def test_explicit_batches_are_validated_naming_the_field() -> None:
    inv = inventory({"a": ENABLED, "b": ENABLED, "plain": {}, "c": ENABLED})
    _, report = plan_upgrade(
        inv,
        spec(migration={"batches": [["a"], ["ghost", "b"], ["plain"]], "exclude": ["c"]}),
        "w",
    )
    errors = {f.code: f.message for f in report.errors}
    assert "migration.batches[1]" in errors["BATCH_NAMESPACE_MISSING"]
    assert "'ghost'" in errors["BATCH_NAMESPACE_MISSING"]
    assert "migration.batches[2]" in errors["BATCH_NAMESPACE_NOT_MIGRATABLE"]
    assert not report.ok
    _, report = plan_upgrade(inv, spec(migration={"batches": [["c"]], "exclude": ["c"]}), "w")
    assert [f.code for f in report.errors] == ["BATCH_NAMESPACE_NOT_SELECTED"]


def test_explicit_batches_warn_about_selected_namespaces_left_out() -> None:
    inv = inventory({"a": ENABLED, "b": ENABLED})
    plan, report = plan_upgrade(inv, spec(migration={"batches": [["b"]]}), "w")
    assert report.ok
    assert names(plan) == [["b"]]
    assert [(f.code, f.namespace) for f in report.warnings] == [("NOT_IN_ANY_BATCH", "a")]


def test_original_labels_recorded_exactly() -> None:
    inv = inventory(
        {"a": ENABLED, "b": {"istio.io/rev": "default"}},
        tags={"default": "1-30-3"},
    )
    plan, _ = plan_upgrade(inv, spec(migration={"growth_factor": 5}), "w")
    labels = {lab.namespace: lab for b in plan.batches for lab in b.original_labels}
    assert labels["a"].istio_injection == "enabled" and labels["a"].istio_rev is None
    assert labels["b"].istio_injection is None and labels["b"].istio_rev == "default"


@pytest.mark.parametrize(
    ("source_version", "target", "force", "code", "severity"),
    [
        ("1.28.0", "1.31.0", False, "SKEW", "error"),
        ("1.28.0", "1.31.0", True, "SKEW", "warning"),
        ("1.32.0", "1.31.0", False, "DOWNGRADE", "error"),
        ("1.32.0", "1.31.0", True, "DOWNGRADE", "warning"),
        ("1.31.0", "1.31.0", True, "SAME_VERSION", "error"),
        ("0.24.2", "1.31.0", False, "SKEW", "error"),
    ],
)
def test_skew_and_downgrade(
    source_version: str, target: str, force: bool, code: str, severity: str
) -> None:
    inv = inventory({"a": ENABLED}, source="old", source_version=source_version)
    _, report = plan_upgrade(inv, spec(target={"version": target}, force=force), "w")
    found = [f for f in report.findings if f.code == code]
    assert found and found[0].severity == severity, report.findings


def test_two_minor_jump_is_allowed() -> None:
    inv = inventory({"a": ENABLED}, source="1-29-1", source_version="1.29.1")
    _, report = plan_upgrade(inv, spec(), "w")
    assert report.ok, report.findings


def test_conflicting_labels_ist0123() -> None:
    both = {"istio-injection": "enabled", "istio.io/rev": "1-30-3"}
    inv = inventory({"a": both, "b": ENABLED, "c": both})
    _, report = plan_upgrade(inv, spec(migration={"exclude": ["c"]}), "w")
    found = {(f.namespace, f.severity) for f in report.findings if f.code == "IST0123"}
    assert found == {("a", "error"), ("c", "warning")}


def test_overlapping_webhooks_resolve_to_the_last_configuration_by_name() -> None:
    # The API server calls matching configurations in name order and Istio's injector
    # re-injects: a revisionless injector left active beside the default tag wins
    # ("istio-sidecar-injector" sorts after "istio-revision-tag-default").
    legacy = WebhookInfo(
        configuration="istio-sidecar-injector",
        name="namespace.sidecar-injector.istio.io",
        revision="default",
        namespace_selector={"matchLabels": {"istio-injection": "enabled"}},
    )
    tag = WebhookInfo(
        configuration="istio-revision-tag-default",
        name="namespace.sidecar-injector.istio.io",
        revision="1-31-0",
        tag="default",
        namespace_selector={"matchLabels": {"istio-injection": "enabled"}},
    )
    assert effective_revision(ENABLED, [legacy, tag], {"default": "1-31-0"}) == "default"
    assert effective_revision(ENABLED, [tag, legacy], {"default": "1-31-0"}) == "default"
    assert effective_revision(ENABLED, [tag], {"default": "1-31-0"}) == "1-31-0"


def test_overlapping_injector_webhooks() -> None:
    rogue = WebhookInfo(
        configuration="istio-extra-injector",
        name="namespace.sidecar-injector.istio.io",
        revision="default",
        namespace_selector={"matchLabels": {"istio-injection": "enabled"}},
    )
    inv = inventory({"a": ENABLED, "b": REV}, extra_webhooks=[rogue])
    _, report = plan_upgrade(inv, spec(), "w")
    overlap = [f for f in report.findings if f.code == "OVERLAPPING_WEBHOOKS"]
    assert [f.namespace for f in overlap] == ["a"]
    assert "istio-extra-injector" in overlap[0].message


def test_non_restartable_pods_are_warnings() -> None:
    job = WorkloadInfo(
        kind="Job",
        name="nightly",
        restartable=False,
        pods=[PodInfo(name="nightly-x", phase="Running", injected_revision="1-30-3")],
    )
    done = WorkloadInfo(
        kind="Job",
        name="old",
        restartable=False,
        pods=[PodInfo(name="old-x", phase="Succeeded", injected_revision="1-30-3")],
    )
    bare = WorkloadInfo(
        kind="Pod",
        name="shell",
        restartable=False,
        pods=[PodInfo(name="shell", phase="Running", injected_revision="1-30-3")],
    )
    inv = inventory(
        {"a": ENABLED},
        workloads={"a": [deployment("web", "1-30-3"), job, done, bare]},
    )
    _, report = plan_upgrade(inv, spec(), "w")
    assert report.ok
    warned = sorted(f.message.split(" ")[0] for f in report.warnings)
    assert warned == ["a/Job/nightly", "a/Pod/shell"]


def test_target_installed_by_someone_else_is_an_error_unless_forced() -> None:
    other = RevisionInfo(name="1-31-0", version="1.31.0", installed_by=None)
    inv = inventory({"a": ENABLED}, extra_revisions=[other])
    _, report = plan_upgrade(inv, spec(), "wf")
    assert "TARGET_ALREADY_INSTALLED" in [f.code for f in report.errors]
    _, forced = plan_upgrade(inv, spec(force=True), "wf")
    assert forced.ok and forced.target_installed and not forced.resumed


def test_target_installed_by_an_earlier_attempt_is_idempotent() -> None:
    mine = RevisionInfo(name="1-31-0", version="1.31.0", installed_by="wf")
    inv = inventory({"a": ENABLED}, extra_revisions=[mine])
    _, report = plan_upgrade(inv, spec(), "wf")
    assert report.ok and report.resumed
    assert "TARGET_FROM_EARLIER_ATTEMPT" in codes(report)


def test_empty_selection_is_an_error() -> None:
    inv = inventory({"a": ENABLED})
    _, report = plan_upgrade(inv, spec(migration={"selector": "team=nobody"}), "w")
    assert [f.code for f in report.errors] == ["EMPTY_SELECTION"]
    assert "migration.selector" in report.errors[0].message


def test_canary_must_be_migratable() -> None:
    inv = inventory({"a": ENABLED, "plain": {}})
    _, report = plan_upgrade(inv, spec(migration={"canary": ["plain"]}), "w")
    assert "CANARY_NOT_MIGRATABLE" in [f.code for f in report.errors]


def test_source_revision_discovery_and_errors() -> None:
    inv = inventory({"a": ENABLED, "b": REV})
    assert source_revision_of(inv, "1-31-0") == "1-30-3"
    _, report = plan_upgrade(inv, spec(source_revision="1-34-0"), "w")
    assert "SOURCE_NOT_INSTALLED" in [f.code for f in report.errors]
    empty = inventory({"a": {}}, tags={})
    empty.revisions = []
    _, report = plan_upgrade(empty, spec(), "w")
    assert "NO_SOURCE_REVISION" in [f.code for f in report.errors]


def test_tags_to_move_include_every_tag_of_the_source() -> None:
    inv = inventory({"a": ENABLED}, tags={"default": "1-30-3", "canary": "1-30-3", "x": "9-9-9"})
    plan, _ = plan_upgrade(inv, spec(), "w")
    assert plan.tags_to_move == ["default", "canary"]
    plan, _ = plan_upgrade(inv, spec(promote={"tags": ["prod"], "follow_source_tags": False}), "w")
    assert plan.tags_to_move == ["prod"]
