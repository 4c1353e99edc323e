"""Scenario files: shipped ones load, bad ones fail naming the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from istio_sandbox.istio.names import ANNOTATION_INJECT_TEMPLATES
from istio_sandbox.resources import BY_KEY
from istio_sandbox.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    new_cluster,
    parse_scenario,
    populate,
    shipped_scenarios,
)

NAMESPACES = BY_KEY["/namespaces"]
DEPLOYMENTS = BY_KEY["apps/deployments"]
WEBHOOKS = BY_KEY["admissionregistration.k8s.io/mutatingwebhookconfigurations"]


def _minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "revisions": [{"version": "1.30.3"}],
        "tags": {"default": "1-30-3"},
        "namespaces": [
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "web", "rps": 5, "calls": ["api"]}, {"name": "api"}],
            }
        ],
    }
    data.update(overrides)
    return data


def test_shipped_scenarios_load() -> None:
    assert {"demo", "bad-canary", "flaky-api", "large"} <= set(shipped_scenarios())
    for name in shipped_scenarios():
        scenario = load_scenario(name)
        assert scenario.name == name


def test_demo_shape() -> None:
    demo = load_scenario("demo")
    namespaces = dict((ns.name, ns) for _, ns in demo.all_namespaces())
    assert 12 <= len(namespaces) <= 16
    labels = [ns.labels for ns in namespaces.values()]
    assert any(lab.get("istio-injection") == "enabled" for lab in labels)
    assert any(lab.get("istio.io/rev") == "default" for lab in labels)
    assert any(lab.get("istio.io/rev") == "1-30-3" for lab in labels)
    assert any(lab.get("istio.io/rev") == "canary" for lab in labels)
    assert any(not lab for lab in labels), "one namespace outside the mesh"
    assert any(w.gateway for ns in namespaces.values() for w in ns.workloads)
    assert any(ns.jobs for ns in namespaces.values())
    assert any(p.opt_out for ns in namespaces.values() for p in ns.pods)
    assert any(not p.opt_out for ns in namespaces.values() for p in ns.pods)
    assert demo.tags == {"default": "1-30-3", "canary": "1-30-3"}


def test_bad_canary_extends_demo_with_a_revision_fault() -> None:
    bad = load_scenario("bad-canary")
    demo = load_scenario("demo")
    assert [ns.name for ns in bad.namespaces] == [ns.name for ns in demo.namespaces]
    (fault,) = bad.faults.traffic
    assert (fault.revision, fault.namespaces, fault.error_ratio) == ("1-31-0", ["checkout"], 0.05)


def test_large_has_2000_namespaces_and_20000_pods() -> None:
    large = load_scenario("large")
    namespaces = [ns for _, ns in large.all_namespaces()]
    assert len(namespaces) == 2000
    assert sum(w.replicas for ns in namespaces for w in ns.workloads) == 20_000
    with_traffic = [ns for ns in namespaces if any(w.rps for w in ns.workloads)]
    assert 0 < len(with_traffic) <= 50


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"tags": {"default": "1-99-0"}},
            "tags.default: revision '1-99-0' is not installed; use one of ['1-30-3']",
        ),
        (
            {"namespaces": [{"name": "Shop"}]},
            "namespaces[0].name: namespace name 'Shop' is not a DNS-1123 label",
        ),
        (
            {"namespaces": [{"name": "a", "workloads": [{"name": "w", "calls": ["b/x"]}]}]},
            "namespaces[0].workloads[0].calls[0]: 'b/x' names no workload; define workload 'x' "
            "in namespace 'b'",
        ),
        (
            {"namespaces": [{"name": "a", "labels": {"istio.io/rev": "stable"}}]},
            "namespaces[0].labels.istio.io/rev: 'stable' is neither an installed revision nor a "
            "tag",
        ),
        (
            {"namespaces": [{"name": "a", "workloads": [{"name": "w", "replicas": -1}]}]},
            "namespaces[0].workloads[0].replicas: Input should be greater than or equal to 0",
        ),
        (
            {"namespaces": [{"name": "a", "workloads": [{"name": "w", "rps": 1, "color": "x"}]}]},
            "namespaces[0].workloads[0].color: unknown field; remove it",
        ),
        ({"revisions": [{"version": "1.24"}]}, "revisions[0].version: '1.24' is not an Istio"),
        ({"namespaces": [{"name": "a"}, {"name": "a"}]}, "namespace 'a' already defined at"),
        (
            {"tags": {}, "namespaces": [{"name": "a", "labels": {"istio-injection": "enabled"}}]},
            "add tags: {default: <revision>}",
        ),
        (
            {"faults": {"traffic": [{"error_ratio": 2}]}},
            "faults.traffic[0].error_ratio: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_scenarios_name_field_and_fix(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_minimal(**change), "test.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("scenario test.yaml is invalid:")


def test_missing_field_is_named() -> None:
    data = _minimal()
    del data["revisions"]
    with pytest.raises(ScenarioError, match="revisions: required field is missing"):
        parse_scenario(data)


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"no scenario named 'nope'; use one of \[.*'demo'"):
        load_scenario("nope")


def test_file_with_extends_overrides_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"extends": "demo", "name": "mine", "cluster_name": "c1"}))
    scenario = load_scenario(path)
    assert (scenario.name, scenario.cluster_name) == ("mine", "c1")
    assert len(scenario.namespaces) == len(load_scenario("demo").namespaces)


def test_extends_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a\nname: b\n")
    with pytest.raises(ScenarioError, match="extends loops"):
        load_scenario(tmp_path / "a.yaml")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="is not valid YAML"):
        load_scenario(path)


def test_populate_creates_the_objects() -> None:
    scenario = load_scenario("demo")
    cluster = new_cluster(scenario)
    populate(cluster, scenario)
    store = cluster.store
    namespaces = {ns["metadata"]["name"]: ns for ns in store.list(NAMESPACES)}
    assert "istio-system" in namespaces
    assert namespaces["catalog"]["metadata"]["labels"]["istio.io/rev"] == "default"
    assert store.get(DEPLOYMENTS, "istio-system", "istiod-1-30-3")
    webhooks = {w["metadata"]["name"]: w for w in store.list(WEBHOOKS)}
    assert set(webhooks) == {
        "istio-sidecar-injector-1-30-3",
        "istio-revision-tag-default",
        "istio-revision-tag-canary",
    }
    assert webhooks["istio-revision-tag-canary"]["metadata"]["labels"]["istio.io/rev"] == "1-30-3"
    gateway = store.get(DEPLOYMENTS, "istio-ingress", "istio-ingressgateway")
    template = gateway["spec"]["template"]["metadata"]
    assert template["annotations"][ANNOTATION_INJECT_TEMPLATES] == "gateway"
    web = store.get(DEPLOYMENTS, "frontend", "web")
    assert web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["metadata"]["labels"] == {"app": "web", "version": "v1"}
    assert store.get(BY_KEY["/services"], "frontend", "web")["spec"]["selector"] == {"app": "web"}
    assert store.get(BY_KEY["batch/jobs"], "batch", "nightly-report")
    opt_out = store.get(BY_KEY["/pods"], "batch", "legacy-agent")
    assert opt_out["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert store.get(BY_KEY["apps/statefulsets"], "inventory", "inventory")
    assert store.get(BY_KEY["apps/daemonsets"], "telemetry", "node-agent")
    before = store.resource_version
    populate(cluster, scenario)
    assert store.resource_version == before, "populate twice changes nothing"


def test_scenario_model_is_strict() -> None:
    assert Scenario.model_config.get("extra") == "forbid"


def test_revisionless_revision_and_its_references() -> None:
    scenario = parse_scenario(
        _minimal(
            revisions=[{"version": "1.30.3", "revision": ""}],
            tags={},
            default_validator="default",
            namespaces=[
                {"name": "legacy", "labels": {"istio-injection": "enabled"}},
                {"name": "tagged", "labels": {"istio.io/rev": "default"}},
            ],
        )
    )
    assert scenario.revision_names() == ["default"]
    assert scenario.revisions[0].chart_revision == ""
    cluster = new_cluster(scenario)
    populate(cluster, scenario)
    store = cluster.store
    assert store.get(DEPLOYMENTS, "istio-system", "istiod")
    assert {w["metadata"]["name"] for w in store.list(WEBHOOKS)} == {"istio-sidecar-injector"}
    validators = BY_KEY["admissionregistration.k8s.io/validatingwebhookconfigurations"]
    default = store.get(validators, "", "istiod-default-validator")
    assert default["webhooks"][0]["clientConfig"]["service"]["name"] == "istiod"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"revisions": [{"version": "1.30.3", "revision": "default"}]}, 'use revision: ""'),
        ({"default_validator": "1-99-0"}, "default_validator: revision '1-99-0' is not installed"),
        ({"tags": {}}, "served by the 'default' tag or a revisionless install"),
    ],
)
def test_revisionless_mistakes_are_named(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_minimal(**change))
    assert expected in str(err.value)
