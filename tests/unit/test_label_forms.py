"""Namespace label forms after promote, and label drift, as the workflow decides them."""

from __future__ import annotations

from istio_upgrade.models.plan import Batch, NamespaceLabels, Plan
from istio_upgrade.workflows.phases.labels import drift, own_forms


def plan(tags: list[str]) -> Plan:
    originals = [
        NamespaceLabels(namespace="a", istio_injection="enabled"),
        NamespaceLabels(namespace="b", istio_rev="canary"),
        NamespaceLabels(namespace="c", istio_rev="1-30-3"),
        NamespaceLabels(namespace="d", istio_rev="default"),
    ]
    return Plan(
        cluster="c",
        source_revision="1-30-3",
        target_revision="1-31-0",
        target_version="1.31.0",
        batches=[Batch(index=0, namespaces=["a", "b", "c", "d"], original_labels=originals)],
        tags_to_move=tags,
    )


def test_own_forms_come_back_where_a_moved_tag_serves_them() -> None:
    forms = {f.namespace: f for f in own_forms(plan(["default", "canary"]))}
    assert forms["a"] == NamespaceLabels(namespace="a", istio_injection="enabled")
    assert forms["b"] == NamespaceLabels(namespace="b", istio_rev="canary")
    assert forms["d"] == NamespaceLabels(namespace="d", istio_rev="default")
    assert "c" not in forms, "pinned to the old revision: stays pinned, to the new one"


def test_a_tag_that_does_not_move_keeps_its_namespaces_pinned() -> None:
    forms = {f.namespace for f in own_forms(plan(["canary"]))}
    assert forms == {"b"}


def test_drift_names_the_namespace_and_the_label() -> None:
    current = [
        NamespaceLabels(namespace="a", istio_rev="1-31-0"),
        NamespaceLabels(namespace="b", istio_injection="enabled"),
        NamespaceLabels(namespace="c", istio_rev="1-30-3"),
    ]
    assert drift(current, "1-31-0") == [
        "b: istio-injection=enabled",
        "b: istio.io/rev=(absent)",
        "c: istio.io/rev=1-30-3",
    ]
