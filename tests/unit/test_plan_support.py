"""Precheck against Istio's support statement (istio/data/support.yaml), before any write."""

from __future__ import annotations

from istio_sandbox.scenario import load_scenario
from istio_upgrade.istio.support import SUPPORT, minor_of
from istio_upgrade.planning import plan_upgrade
from tests.unit.plan_fixtures import ENABLED, inventory, spec


def codes(**facts: object) -> dict[str, tuple[str, str]]:
    inv = inventory({"a": ENABLED}).model_copy(update=facts)
    _, report = plan_upgrade(inv, spec(), "w")
    return {f.code: (f.severity, f.message) for f in report.findings}


def test_the_statement_is_read_from_data() -> None:
    assert SUPPORT.canary_max_minor_jump == 2
    assert SUPPORT.ambient_max_minor_jump == 1
    assert SUPPORT.kubernetes_for("1.24") == ("1.28", "1.29", "1.30", "1.31")
    assert minor_of("v1.32.4-eks-1") == (1, 32)


def test_the_current_pair_is_supported_and_the_demo_starts_from_it() -> None:
    source, target = SUPPORT.current
    assert [minor_of(v) for v in (source, target)] == [(1, 30), (1, 31)]
    assert {SUPPORT.status[f"{m[0]}.{m[1]}"] for m in map(minor_of, SUPPORT.current) if m} == {
        "supported"
    }
    scenario = load_scenario("demo")
    assert [r.version for r in scenario.revisions] == [source]


def test_kubernetes_too_old_for_the_target_is_a_warning_as_in_istioctl() -> None:
    severity, message = codes(kubernetes_version="v1.26.3")["KUBERNETES_TOO_OLD"]
    assert severity == "warning"
    assert "1.32 to 1.36" in message and "v1.26.3" in message


def test_kubernetes_newer_than_supported_is_a_warning() -> None:
    severity, message = codes(kubernetes_version="v1.37.0")["KUBERNETES_NOT_SUPPORTED"]
    assert severity == "warning" and "newer than supported" in message


def test_a_supported_kubernetes_says_nothing() -> None:
    found = codes(kubernetes_version="v1.32.0")
    assert not {"KUBERNETES_TOO_OLD", "KUBERNETES_NOT_SUPPORTED", "NO_SUPPORT_DATA"} & set(found)


def test_an_inventory_without_the_facts_is_not_checked() -> None:
    found = codes()
    assert not {"KUBERNETES_TOO_OLD", "ENVOY_FILTERS", "GATEWAY_API_IN_USE"} & set(found)


def test_envoy_filters_and_gateway_api_are_named() -> None:
    found = codes(
        envoy_filters=["istio-system/lua", "shop/ratelimit"],
        envoy_filter_count=2,
        gateway_api_version="v1.2.1",
    )
    assert found["ENVOY_FILTERS"][0] == "warning"
    assert "shop/ratelimit" in found["ENVOY_FILTERS"][1]
    assert "v1.2.1" in found["GATEWAY_API_IN_USE"][1]


def test_a_minor_jump_offers_compatibility_version() -> None:
    severity, message = codes()["COMPATIBILITY_VERSION"]
    assert severity == "info" and "compatibilityVersion=1.30" in message


def test_an_inventory_recorded_before_the_statement_plans_as_it_did() -> None:
    # Upgrades started before discovery read the statement replay their plan: an ambient
    # namespace (whose labels old inventories did record) must not refuse them now.
    old = inventory({"a": ENABLED, "mesh": {"istio.io/dataplane-mode": "ambient"}})
    old = old.model_copy(update={"support": None})
    _, report = plan_upgrade(old, spec(), "w")
    assert report.ok, report.errors
    assert "AMBIENT_NOT_SUPPORTED" not in {f.code for f in report.findings}
