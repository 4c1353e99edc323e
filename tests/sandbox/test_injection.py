"""The sandbox's sidecar injector follows Istio's webhook selectors and precedence rules."""

from __future__ import annotations

import json

import pytest

from istio_sandbox.cluster import Cluster
from istio_sandbox.controllers.objects import (
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    WEBHOOKS,
)
from istio_sandbox.store import Obj, StoreError
from tests.sandbox.controllers_support import (
    condition,
    create,
    deployment,
    events_for,
    install_revision,
    namespace,
    pods_of,
    restart,
    revision_ready,
    rollout_complete,
    running,
    set_tag,
    wait_for,
)


def bare_pod(cluster: Cluster, ns: str, name: str, labels: dict[str, str] | None = None) -> Obj:
    return cluster.store.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
        },
    )


def injected_revision(pod: Obj) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("istio.io/rev")


async def two_revisions(cluster: Cluster) -> None:
    """1.30.3 (tagged default) and 1.31.0, both Ready."""
    install_revision(cluster, "1.30.3", "1-30-3")
    install_revision(cluster, "1.31.0", "1-31-0")
    set_tag(cluster, "default", "1-30-3")
    await revision_ready(cluster, "1-30-3")
    await revision_ready(cluster, "1-31-0")


async def test_injected_pod_carries_istio_annotations_labels_and_containers() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "shop", {"istio.io/rev": "1-31-0"})
        pod = bare_pod(cluster, "shop", "web", {"app": "web", "version": "v3"})
        annotations = pod["metadata"]["annotations"]
        assert annotations["istio.io/rev"] == "1-31-0"
        status = json.loads(annotations["sidecar.istio.io/status"])
        assert status["revision"] == "1-31-0"
        assert status["initContainers"] == ["istio-init"]
        assert status["containers"] == ["istio-proxy"]
        assert status["imagePullSecrets"] is None
        assert "istio-envoy" in status["volumes"]
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        assert containers["istio-proxy"]["image"] == "docker.io/istio/proxyv2:1.31.0"
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-init"]
        labels = pod["metadata"]["labels"]
        assert labels["security.istio.io/tlsMode"] == "istio"
        assert labels["service.istio.io/canonical-name"] == "web"
        assert labels["service.istio.io/canonical-revision"] == "v3"
        assert "istio.io/rev" not in labels, "sidecar pods carry no istio.io/rev label"
        assert cluster.injection_successes["1-31-0"] == 1


async def test_istio_injection_enabled_beats_istio_io_rev_and_uses_the_default_tag() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "both", {"istio-injection": "enabled", "istio.io/rev": "1-31-0"})
        assert injected_revision(bare_pod(cluster, "both", "p")) == "1-30-3"


async def test_namespace_label_beats_the_pod_label() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "ns-rev", {"istio.io/rev": "1-31-0"})
        pod = bare_pod(cluster, "ns-rev", "p", {"istio.io/rev": "1-30-3"})
        assert injected_revision(pod) == "1-31-0"


async def test_pod_label_is_used_when_the_namespace_has_none() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "plain")
        assert injected_revision(bare_pod(cluster, "plain", "p", {"istio.io/rev": "1-31-0"})) == (
            "1-31-0"
        )
        assert injected_revision(bare_pod(cluster, "plain", "q")) is None, "no label, no sidecar"


async def test_default_tag_serves_rev_default_and_pod_opt_in() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "tagged", {"istio.io/rev": "default"})
        namespace(cluster, "plain")
        assert injected_revision(bare_pod(cluster, "tagged", "p")) == "1-30-3"
        opted_in = bare_pod(cluster, "plain", "p", {"sidecar.istio.io/inject": "true"})
        assert injected_revision(opted_in) == "1-30-3"


async def test_moving_a_tag_redirects_new_pods_only() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "legacy", {"istio-injection": "enabled"})
        before = bare_pod(cluster, "legacy", "before")
        set_tag(cluster, "default", "1-31-0")
        after = bare_pod(cluster, "legacy", "after")
        assert injected_revision(before) == "1-30-3"
        assert injected_revision(after) == "1-31-0"
        assert injected_revision(cluster.store.get(PODS, "legacy", "before")) == "1-30-3"
        proxy = next(c for c in after["spec"]["containers"] if c["name"] == "istio-proxy")
        assert proxy["image"].endswith(":1.31.0")


@pytest.mark.parametrize("ns_labels", [{"istio-injection": "enabled"}, {"istio.io/rev": "1-31-0"}])
async def test_inject_false_is_never_injected(ns_labels: dict[str, str]) -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "shop", ns_labels)
        pod = bare_pod(cluster, "shop", "p", {"sidecar.istio.io/inject": "false"})
        assert injected_revision(pod) is None
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]


async def test_gateway_template_keeps_its_proxy_container_without_init() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "gw", {"istio.io/rev": "1-31-0"})
        pod = cluster.store.create(
            PODS,
            {
                "metadata": {
                    "name": "ingress",
                    "namespace": "gw",
                    "labels": {"istio": "ingressgateway"},
                    "annotations": {"inject.istio.io/templates": "gateway"},
                },
                "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]},
            },
        )
        assert [c["image"] for c in pod["spec"]["containers"]] == ["docker.io/istio/proxyv2:1.31.0"]
        assert not pod["spec"].get("initContainers")
        status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
        assert status["revision"] == "1-31-0" and status["templates"] == ["gateway"]


async def test_not_ready_revision_refuses_pods_then_recovers() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.30.3", "1-30-3")
        await revision_ready(cluster, "1-30-3")
        namespace(cluster, "shop", {"istio.io/rev": "1-30-3"})
        create(cluster, deployment("web", "shop", 2))
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"))

        # The new revision is installed but istiod is not Ready yet; the namespace moves to it.
        cluster.timings.istiod_ready_s = 1.0
        install_revision(cluster, "1.31.0", "1-31-0")
        cluster.store.mutate(
            NAMESPACES,
            "",
            "shop",
            lambda o: o["metadata"]["labels"].update({"istio.io/rev": "1-31-0"}),
        )
        with pytest.raises(StoreError) as refused:
            bare_pod(cluster, "shop", "direct")
        assert refused.value.code == 500
        assert refused.value.message == (
            'Internal error occurred: failed calling webhook "rev.namespace.sidecar-injector.'
            'istio.io": failed to call webhook: Post "https://istiod-1-31-0.istio-system.svc:443'
            '/inject?timeout=10s": no endpoints available for service "istiod-1-31-0"'
        )
        restart(cluster, DEPLOYMENTS.key, "shop", "web")

        def replica_failure() -> Obj | None:
            return condition(cluster.store.get(DEPLOYMENTS, "shop", "web"), "ReplicaFailure")

        failure = await wait_for(replica_failure, what="ReplicaFailure condition")
        assert failure["reason"] == "FailedCreate"
        assert 'no endpoints available for service "istiod-1-31-0"' in failure["message"]
        assert not rollout_complete(cluster, "shop", "web")
        rs_events = [
            e
            for rs in cluster.store.list(REPLICASETS, "shop")
            for e in events_for(cluster, "shop", rs["metadata"]["name"])
            if e["reason"] == "FailedCreate"
        ]
        assert rs_events and rs_events[0]["type"] == "Warning"
        assert cluster.injection_failures["1-31-0"] >= 2
        old_pods = [injected_revision(p) for p in pods_of(cluster, "shop")]
        assert old_pods.count("1-30-3") >= 1, "the stalled rollout keeps old pods serving"

        await revision_ready(cluster, "1-31-0")
        await wait_for(lambda: rollout_complete(cluster, "shop", "web"), what="recovered rollout")
        await wait_for(lambda: replica_failure() is None, what="ReplicaFailure cleared")
        await wait_for(lambda: len(pods_of(cluster, "shop")) == 2)
        assert {injected_revision(p) for p in pods_of(cluster, "shop")} == {"1-31-0"}


async def test_overlapping_webhooks_all_inject_in_name_order_the_last_wins_and_warn() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "x", {"istio.io/rev": "1-31-0"})
        assert injected_revision(bare_pod(cluster, "x", "solo")) == "1-31-0"
        assert not [e for e in events_for(cluster, "x", "solo") if e["type"] == "Warning"]
        # A stray copy of the injector sending the same pods to the old revision's istiod.
        stray = cluster.store.get(WEBHOOKS, "", "istio-sidecar-injector-1-31-0")
        stray["metadata"] = {"name": "zz-stray-injector"}
        for wh in stray["webhooks"]:
            wh["clientConfig"]["service"]["name"] = "istiod-1-30-3"
        cluster.store.create(WEBHOOKS, stray)
        pod = bare_pod(cluster, "x", "dup")
        assert injected_revision(pod) == "1-30-3", "every webhook patches; the last one wins"
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "istio-proxy"]
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-init"]
        proxy = pod["spec"]["containers"][1]
        assert proxy["image"] == "docker.io/istio/proxyv2:1.30.3"
        status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
        assert status["revision"] == "1-30-3"
        assert cluster.injection_successes["1-31-0"] == 2
        assert cluster.injection_successes["1-30-3"] == 1
        warnings = [e for e in events_for(cluster, "x", "dup") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["OverlappingWebhooks"]
        assert "zz-stray-injector" in warnings[0]["message"]


async def test_revisionless_injector_and_default_tag_overlap_the_later_name_wins() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.30.3", "")
        install_revision(cluster, "1.31.0", "1-31-0")
        set_tag(cluster, "default", "1-31-0")
        await revision_ready(cluster, "")
        await revision_ready(cluster, "1-31-0")
        namespace(cluster, "legacy", {"istio-injection": "enabled"})
        pod = bare_pod(cluster, "legacy", "p")
        # "istio-revision-tag-default" < "istio-sidecar-injector": the tag (1-31-0) injects
        # first, the revisionless injector re-injects last and wins. This is why moving the
        # default tag must also neutralise the revisionless injector.
        assert injected_revision(pod) == "default"
        proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
        assert proxy["image"].endswith(":1.30.3")
        env = {e["name"]: e.get("value") for e in proxy["env"]}
        assert env["CA_ADDR"] == "istiod.istio-system.svc:15012"
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "istio-proxy"]
        assert cluster.injection_successes["default"] == 1
        assert cluster.injection_successes["1-31-0"] == 1
        warnings = [e for e in events_for(cluster, "legacy", "p") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["OverlappingWebhooks"]

        # Neutralised as istioctl tag set does (never-matching selectors): the tag wins alone.
        def neutralise(o: Obj) -> None:
            for wh in o["webhooks"]:
                if wh["name"] in (
                    "namespace.sidecar-injector.istio.io",
                    "object.sidecar-injector.istio.io",
                ):
                    wh["namespaceSelector"] = {
                        "matchExpressions": [
                            {
                                "key": "istio.io/deactivated",
                                "operator": "In",
                                "values": ["never-match"],
                            }
                        ]
                    }
                    wh["objectSelector"] = {
                        "matchExpressions": [
                            {
                                "key": "istio.io/deactivated",
                                "operator": "In",
                                "values": ["never-match"],
                            }
                        ]
                    }

        cluster.store.mutate(WEBHOOKS, "", "istio-sidecar-injector", neutralise)
        assert injected_revision(bare_pod(cluster, "legacy", "q")) == "1-31-0"


async def test_revisionless_install_writes_rev_default() -> None:
    async with running() as cluster:
        install_revision(cluster, "1.30.3", "")
        await revision_ready(cluster, "")
        namespace(cluster, "legacy", {"istio-injection": "enabled"})
        namespace(cluster, "tagged", {"istio.io/rev": "default"})
        namespace(cluster, "plain")
        for ns in ("legacy", "tagged"):
            pod = bare_pod(cluster, ns, "p")
            assert injected_revision(pod) == "default"
            status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
            assert status["revision"] == "default"
            proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
            env = {e["name"]: e.get("value") for e in proxy["env"]}
            assert env["CA_ADDR"] == "istiod.istio-system.svc:15012"
        opted_in = bare_pod(cluster, "plain", "gw", {"sidecar.istio.io/inject": "true"})
        assert injected_revision(opted_in) == "default"
        assert injected_revision(bare_pod(cluster, "plain", "q")) is None


async def _scale_istiod_to_zero(cluster: Cluster, revision: str) -> None:
    cluster.store.mutate(
        DEPLOYMENTS, "istio-system", f"istiod-{revision}", lambda o: o["spec"].update(replicas=0)
    )
    await wait_for(
        lambda: (
            not [
                p
                for p in cluster.store.list(PODS, "istio-system")
                if f"istiod-{revision}" in p["metadata"]["name"]
            ]
        ),
        what="istiod pods gone",
    )


async def test_webhook_whose_istiod_has_no_ready_pod_refuses() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "shop", {"istio.io/rev": "1-31-0"})
        await _scale_istiod_to_zero(cluster, "1-31-0")
        with pytest.raises(StoreError) as refused:
            bare_pod(cluster, "shop", "p")
        assert refused.value.message == (
            'Internal error occurred: failed calling webhook "rev.namespace.sidecar-injector.'
            'istio.io": failed to call webhook: Post "https://istiod-1-31-0.istio-system.svc:443'
            '/inject?timeout=10s": no endpoints available for service "istiod-1-31-0"'
        )
        assert cluster.store.try_get(PODS, "shop", "p") is None


async def test_failure_policy_ignore_skips_an_unavailable_webhook() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "shop", {"istio.io/rev": "1-31-0"})

        def ignore(o: Obj) -> None:
            for wh in o["webhooks"]:
                wh["failurePolicy"] = "Ignore"

        cluster.store.mutate(WEBHOOKS, "", "istio-sidecar-injector-1-31-0", ignore)
        await _scale_istiod_to_zero(cluster, "1-31-0")
        pod = bare_pod(cluster, "shop", "p")
        assert injected_revision(pod) is None
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]


async def test_reinvocation_if_needed_runs_an_earlier_webhook_again() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "x", {"istio.io/rev": "1-31-0"})
        early = cluster.store.get(WEBHOOKS, "", "istio-sidecar-injector-1-31-0")
        early["metadata"] = {"name": "aa-early-injector"}
        for wh in early["webhooks"]:
            wh["clientConfig"]["service"]["name"] = "istiod-1-30-3"
            wh["reinvocationPolicy"] = "IfNeeded"
        cluster.store.create(WEBHOOKS, early)
        # aa-early (1-30-3) patches, istio-sidecar-injector-1-31-0 re-injects (a change), so
        # the IfNeeded webhook is called once more and its injection is the final one.
        assert injected_revision(bare_pod(cluster, "x", "p")) == "1-30-3"
        assert cluster.injection_successes["1-30-3"] == 2


@pytest.mark.parametrize("system_ns", ["kube-system", "kube-public", "kube-node-lease"])
async def test_system_namespaces_and_host_network_pods_are_never_injected(system_ns: str) -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        if cluster.store.try_get(NAMESPACES, "", system_ns) is None:
            namespace(cluster, system_ns)
        cluster.store.mutate(
            NAMESPACES,
            "",
            system_ns,
            lambda o: o["metadata"].setdefault("labels", {}).update({"istio-injection": "enabled"}),
        )
        assert injected_revision(bare_pod(cluster, system_ns, "p")) is None
        namespace(cluster, "shop", {"istio-injection": "enabled"})
        host = cluster.store.create(
            PODS,
            {
                "metadata": {"name": "host", "namespace": "shop"},
                "spec": {"hostNetwork": True, "containers": [{"name": "a", "image": "x:1"}]},
            },
        )
        assert injected_revision(host) is None


async def test_pod_label_beats_the_legacy_annotation() -> None:
    async with running() as cluster:
        await two_revisions(cluster)
        namespace(cluster, "shop", {"istio-injection": "enabled"})

        def pod(name: str, labels: dict[str, str], annotations: dict[str, str]) -> Obj:
            return cluster.store.create(
                PODS,
                {
                    "metadata": {
                        "name": name,
                        "namespace": "shop",
                        "labels": labels,
                        "annotations": annotations,
                    },
                    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
                },
            )

        off = {"sidecar.istio.io/inject": "false"}
        on = {"sidecar.istio.io/inject": "true"}
        assert injected_revision(pod("annotation-off", {}, off)) is None
        assert injected_revision(pod("label-on-annotation-off", on, off)) == "1-30-3"
        assert injected_revision(pod("label-off-annotation-on", off, on)) is None
