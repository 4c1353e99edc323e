"""The rendered revision and tag objects route pods the way Istio's webhooks do."""

from __future__ import annotations

from typing import Any

import pytest

from istio_upgrade.istio.manifests import (
    load_bundle_yaml,
    render_bundle_yaml,
    render_revision,
    render_tag,
)

Obj = dict[str, Any]


def _matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes matchExpressions semantics, enough for the operators Istio uses."""
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _webhooks_hit(config: Obj, ns_labels: dict[str, str], pod_labels: dict[str, str]) -> list[str]:
    return [
        w["name"]
        for w in config["webhooks"]
        if _matches(w["namespaceSelector"], ns_labels) and _matches(w["objectSelector"], pod_labels)
    ]


def _by_kind(objects: list[Obj], kind: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_revision_objects_are_named_after_the_revision() -> None:
    objects = render_revision("1.31.0", "1-31-0")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert names == {
        ("ServiceAccount", "istiod-1-31-0"),
        ("ConfigMap", "istio-1-31-0"),
        ("ConfigMap", "istio-sidecar-injector-1-31-0"),
        ("Deployment", "istiod-1-31-0"),
        ("Service", "istiod-1-31-0"),
        ("PodDisruptionBudget", "istiod-1-31-0"),
        ("MutatingWebhookConfiguration", "istio-sidecar-injector-1-31-0"),
        ("ValidatingWebhookConfiguration", "istio-validator-1-31-0-istio-system"),
    }
    for obj in objects:
        assert obj["metadata"]["labels"]["istio.io/rev"] == "1-31-0"
        if obj["kind"] not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == "istio-system"


def test_deployment_runs_pilot_of_the_version() -> None:
    deploy = _by_kind(render_revision("1.31.0", "1-31-0", hub="registry.local/istio"), "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "discovery"
    assert container["image"] == "registry.local/istio/pilot:1.31.0"
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    labels = deploy["metadata"]["labels"]
    assert (labels["app"], labels["istio"], labels["istio.io/rev"]) == ("istiod", "pilot", "1-31-0")
    template_labels = deploy["spec"]["template"]["metadata"]["labels"]
    for key, value in deploy["spec"]["selector"]["matchLabels"].items():
        assert template_labels[key] == value


def test_service_ports() -> None:
    svc = _by_kind(render_revision("1.30.3", "1-30-3"), "Service")
    ports = {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {(15010, 15010), (15012, 15012), (443, 15017), (15014, 15014)}
    assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "1-30-3"}


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "hit"),
    [
        ({"istio.io/rev": "1-31-0"}, {}, ["rev.namespace.sidecar-injector.istio.io"]),
        ({"istio.io/rev": "1-31-0"}, {"sidecar.istio.io/inject": "false"}, []),
        # istio-injection beats istio.io/rev: migration must remove it.
        ({"istio.io/rev": "1-31-0", "istio-injection": "enabled"}, {}, []),
        ({}, {"istio.io/rev": "1-31-0"}, ["rev.object.sidecar-injector.istio.io"]),
        # A namespace label beats a pod label.
        ({"istio.io/rev": "1-30-3"}, {"istio.io/rev": "1-31-0"}, []),
        ({"istio.io/rev": "1-30-3"}, {}, []),
        ({}, {}, []),
    ],
)
def test_revision_webhook_routing(
    ns_labels: dict[str, str], pod_labels: dict[str, str], hit: list[str]
) -> None:
    webhook = _by_kind(render_revision("1.31.0", "1-31-0"), "MutatingWebhookConfiguration")
    assert _webhooks_hit(webhook, ns_labels, pod_labels) == hit
    for w in webhook["webhooks"]:
        assert w["clientConfig"]["service"]["name"] == "istiod-1-31-0"
        assert w["clientConfig"]["service"]["path"] == "/inject"
        assert w["failurePolicy"] == "Fail"
        assert w["sideEffects"] == "None"
        assert w["admissionReviewVersions"] == ["v1"]
        assert w["rules"][0]["resources"] == ["pods"]
        assert w["rules"][0]["operations"] == ["CREATE"]


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "hit"),
    [
        ({"istio-injection": "enabled"}, {}, ["namespace.sidecar-injector.istio.io"]),
        ({"istio-injection": "disabled"}, {}, []),
        ({"istio.io/rev": "default"}, {}, ["rev.namespace.sidecar-injector.istio.io"]),
        ({}, {"sidecar.istio.io/inject": "true"}, ["object.sidecar-injector.istio.io"]),
        ({}, {"istio.io/rev": "default"}, ["rev.object.sidecar-injector.istio.io"]),
        ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, []),
        ({"istio.io/rev": "1-30-3"}, {}, []),
        ({}, {}, []),
    ],
)
def test_default_tag_routing(
    ns_labels: dict[str, str], pod_labels: dict[str, str], hit: list[str]
) -> None:
    objects = render_tag("default", "1-30-3")
    webhook = _by_kind(objects, "MutatingWebhookConfiguration")
    assert webhook["metadata"]["name"] == "istio-revision-tag-default"
    assert webhook["metadata"]["labels"]["istio.io/tag"] == "default"
    assert webhook["metadata"]["labels"]["istio.io/rev"] == "1-30-3"
    assert _webhooks_hit(webhook, ns_labels, pod_labels) == hit
    assert {w["clientConfig"]["service"]["name"] for w in webhook["webhooks"]} == {"istiod-1-30-3"}
    svc = _by_kind(objects, "Service")
    assert svc["metadata"]["name"] == "istiod-revision-tag-default"
    assert svc["spec"]["selector"]["istio.io/rev"] == "1-30-3"


def test_custom_tag_serves_only_its_name() -> None:
    webhook = _by_kind(render_tag("canary", "1-31-0"), "MutatingWebhookConfiguration")
    assert [w["name"] for w in webhook["webhooks"]] == [
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
    ]
    assert _webhooks_hit(webhook, {"istio.io/rev": "canary"}, {}) == [
        "rev.namespace.sidecar-injector.istio.io"
    ]
    assert _webhooks_hit(webhook, {"istio-injection": "enabled"}, {}) == []


def test_bundle_yaml_round_trips() -> None:
    objects = render_revision("1.31.0", "1-31-0") + render_tag("default", "1-31-0")
    text = render_bundle_yaml(objects)
    assert text.count("\n---\n") == len(objects) - 1
    assert load_bundle_yaml(text) == objects


def test_bundle_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match=r"document 1 .* apiVersion, kind and metadata"):
        load_bundle_yaml("---\nkind: A\nmetadata: {}\n---\n- a list\n")


@pytest.mark.parametrize(
    ("version", "revision", "message"),
    [
        ("1.24", "1-31-0", "not an Istio version"),
        ("1.31.0", "1.31.0", "revision '1.31.0' is not a DNS-1123 label"),
        ("1.31.0", "default", "reserved"),
    ],
)
def test_bad_revision_arguments(version: str, revision: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_revision(version, revision)


def test_bad_tag_argument() -> None:
    with pytest.raises(ValueError, match="tag 'Prod' is not a DNS-1123 label"):
        render_tag("Prod", "1-31-0")


def test_a_gateway_chart_rendered_with_the_revision_in_its_name_is_refused() -> None:
    from istio_upgrade.istio.bundle import sort_bundle

    gateway = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istio-ingress-1-31-0", "namespace": "istio-ingress",
                     "labels": {"app": "istio-ingress-1-31-0", "istio": "ingress-1-31-0"}},
        "spec": {"template": {"metadata": {
            "labels": {"sidecar.istio.io/inject": "true", "istio.io/rev": "1-31-0"},
            "annotations": {"inject.istio.io/templates": "gateway"}}}},
    }  # fmt: skip
    sorting = sort_bundle([gateway], "1-31-0")
    assert not sorting.revision
    assert "gateways are upgraded by migrating their pods" in sorting.refused[0]
