"""Scenario files with a Sail-installed control plane: validation and what populate builds."""

from __future__ import annotations

from typing import Any

import pytest

from istio_sandbox.controllers.objects import DEPLOYMENTS, WEBHOOKS
from istio_sandbox.istio.sail_crds import (
    ISTIO_REVISION_TAGS,
    ISTIO_REVISIONS,
    ISTIOS,
    image_version,
    resolve_version,
    revision_name,
)
from istio_sandbox.scenario import (
    ScenarioError,
    load_scenario,
    new_cluster,
    parse_scenario,
    populate_control_plane,
)


def _doc(**sail: Any) -> dict[str, Any]:
    return {"name": "s", "revisions": [], "sail": {"version": "v1.30.3", **sail}}


def test_shipped_sail_scenario_installs_through_sail() -> None:
    scenario = load_scenario("sail")
    assert scenario.sail is not None
    assert scenario.revision_names() == ["default-v1-30-3"]
    cluster = new_cluster(scenario)
    populate_control_plane(cluster, scenario)
    store = cluster.store
    istio = store.get(ISTIOS, "", "default")
    assert istio["spec"]["updateStrategy"] == {"type": "RevisionBased"}
    rev = store.get(ISTIO_REVISIONS, "", "default-v1-30-3")
    assert rev["metadata"]["ownerReferences"][0]["uid"] == istio["metadata"]["uid"]
    assert store.try_get(DEPLOYMENTS, "istio-system", "istiod-default-v1-30-3") is not None
    tag = store.get(ISTIO_REVISION_TAGS, "", "default")
    assert tag["status"]["istioRevision"] == "default-v1-30-3"
    webhook = store.get(WEBHOOKS, "", "istio-revision-tag-default")
    assert webhook["metadata"]["labels"]["istio.io/rev"] == "default-v1-30-3"


@pytest.mark.parametrize(
    ("sail", "message"),
    [
        ({"version": "1.31.0"}, "sail.version: Sail versions start with v; use 'v1.31.0'"),
        ({"version": "v1.99.0"}, "sail.version: 'v1.99.0' is not a version Sail accepts"),
        ({"version": "v1.28.10"}, "sail.version: 'v1.28.10' is end-of-life in Sail; use v1.29.0"),
        ({"update_strategy": "Blue"}, "sail.update_strategy"),
        ({"inactive_revision_deletion_grace_period_s": -1}, "sail.inactive_revision_deletion"),
        ({"tags": ["default-v1-30-3"]}, "sail.tags: a tag cannot share its name with a revision"),
    ],
)
def test_bad_sail_section_names_the_field(sail: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_doc(**sail))


def test_no_revision_and_no_sail_is_refused() -> None:
    with pytest.raises(ScenarioError, match="revisions: List should have at least 1 item"):
        parse_scenario({"name": "s", "revisions": []})


def test_namespace_labels_may_name_the_sail_revision_and_tags() -> None:
    doc = _doc(tags=["default", "prod"])
    doc["namespaces"] = [
        {"name": "a", "labels": {"istio.io/rev": "default-v1-30-3"}},
        {"name": "b", "labels": {"istio.io/rev": "prod"}},
        {"name": "c", "labels": {"istio-injection": "enabled"}},
    ]
    parse_scenario(doc)
    doc["namespaces"] = [{"name": "d", "labels": {"istio.io/rev": "nope"}}]
    with pytest.raises(ScenarioError, match="'nope' is neither an installed revision nor a tag"):
        parse_scenario(doc)


def test_revision_names_and_versions_follow_sail() -> None:
    assert revision_name("default", "v1.31.0", "RevisionBased") == "default-v1-31-0"
    assert revision_name("default", "v1.31.0", "InPlace") == "default"
    assert revision_name("prod", "v1.24-latest", "RevisionBased") == "prod-v1-24-latest"
    assert resolve_version("v1.24-latest") == "v1.24.6"
    assert image_version("v1.30.3") == "1.30.3"
