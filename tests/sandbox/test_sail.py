"""The sandbox's Sail Operator, driven over HTTP with the real kubernetes client: RevisionBased
upgrades (new IstioRevision, tag moves, pruning after the grace period), InPlace upgrades,
revision tags targeting revisions, IstioCNI bumps, and the CRD schema's refusals."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from istio_sandbox.scenario import load_scenario, parse_scenario
from istio_sandbox.server import Sandbox
from istio_sandbox.state import snapshot

GROUP, VERSION = "sailoperator.io", "v1"
FAST = {
    "pod_start_s": 0.05,
    "pod_ready_s": 0.05,
    "pod_terminate_s": 0.05,
    "istiod_ready_s": 0.2,
    "job_duration_s": 0.1,
    "controller_period_s": 0.02,
}
WAIT_S = 60.0
"""Upper bound for facts to appear (generous: the machine is shared)."""


def _scenario(sail: dict[str, Any], namespaces: list[dict[str, Any]] | None = None) -> Any:
    return parse_scenario(
        {
            "name": "sail-test",
            "timings": FAST,
            "revisions": [],
            "sail": sail,
            "namespaces": namespaces
            if namespaces is not None
            else [
                {
                    "name": "shop",
                    "labels": {"istio.io/rev": "default"},
                    "workloads": [{"name": "cart", "replicas": 2, "rps": 10}],
                },
                {
                    "name": "pinned",
                    "labels": {"istio.io/rev": "default-v1-30-3"},
                    "workloads": [{"name": "api", "replicas": 1, "rps": 5}],
                },
            ],
        }
    )


class Api:
    """The kubernetes client's APIs on a sandbox, called off the sandbox's event loop."""

    def __init__(self, url: str) -> None:
        cfg = k8s.Configuration(host=url)
        self.client = k8s.ApiClient(cfg)
        self.custom = k8s.CustomObjectsApi(self.client)
        self.core = k8s.CoreV1Api(self.client)
        self.apps = k8s.AppsV1Api(self.client)
        self.admission = k8s.AdmissionregistrationV1Api(self.client)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.run(
                self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return obj

    async def patch(self, plural: str, name: str, body: Any) -> dict[str, Any]:
        obj: dict[str, Any] = await self.run(
            self.custom.patch_cluster_custom_object, GROUP, VERSION, plural, name, body
        )
        return obj

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = await self.run(
            self.custom.create_cluster_custom_object, GROUP, VERSION, plural, body
        )
        return obj


@asynccontextmanager
async def served(scenario: Any) -> AsyncIterator[tuple[Sandbox, Api]]:
    sandbox = Sandbox(scenario, tick_s=0.2)
    await sandbox.start()
    api = Api(sandbox.url)
    try:
        yield sandbox, api
    finally:
        api.client.close()  # type: ignore[no-untyped-call]
        await sandbox.stop()


async def until(fact: Callable[[], Any], what: str) -> Any:
    """Await ``fact()`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = await fact()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def cond(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return {}


def is_true(obj: dict[str, Any] | None, ctype: str) -> bool:
    return cond(obj, ctype).get("status") == "True"


def _message(raised: pytest.ExceptionInfo[ApiException]) -> str:
    """The API's ``Status`` message of a refused request."""
    return str(json.loads(str(raised.value.body))["message"])


def _ts(value: str) -> float:
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


async def test_revision_based_upgrade_creates_moves_and_prunes() -> None:
    scenario = _scenario(
        {
            "version": "v1.30.3",
            "update_strategy": "RevisionBased",
            "inactive_revision_deletion_grace_period_s": 2,
            "tags": ["default"],
        }
    )
    async with served(scenario) as (_sandbox, api):
        old, new = "default-v1-30-3", "default-v1-31-0"
        rev = await until(lambda: _ready(api, old), f"{old} Ready")
        assert rev["spec"]["version"] == "v1.30.3"
        assert rev["spec"]["values"]["revision"] == old
        assert rev["metadata"]["ownerReferences"][0]["kind"] == "Istio"
        pods = (await api.run(api.core.list_namespaced_pod, "shop")).items
        assert pods and {p.metadata.annotations["istio.io/rev"] for p in pods} == {old}

        await api.patch("istios", "default", {"spec": {"version": "v1.31.0"}})
        await until(lambda: _ready(api, new), f"{new} Ready")
        istio = await until(
            lambda: _istio_with(api, active=new, total=2, ready=2), "Istio status counting both"
        )
        assert istio["status"]["state"] == "Healthy"
        assert is_true(istio, "Ready")
        dep = await api.run(api.apps.read_namespaced_deployment, f"istiod-{new}", "istio-system")
        assert dep.spec.template.spec.containers[0].image.endswith(":1.31.0")

        # The default tag follows its Istio: webhook, Service and default validator.
        tag = await until(lambda: _tag_on(api, "default", new), "tag default on the new rev")
        assert tag["status"]["istiodNamespace"] == "istio-system"
        mwc = await api.run(
            api.admission.read_mutating_webhook_configuration, "istio-revision-tag-default"
        )
        assert mwc.metadata.labels["istio.io/rev"] == new
        assert {w.client_config.service.name for w in mwc.webhooks} == {f"istiod-{new}"}
        validator = await api.run(
            api.admission.read_validating_webhook_configuration, "istiod-default-validator"
        )
        assert validator.webhooks[0].client_config.service.name == f"istiod-{new}"

        # The old revision is kept while the pinned namespace and its pods use it.
        assert is_true(await api.get("istiorevisions", old), "InUse")
        await api.run(
            api.core.patch_namespace, "pinned", {"metadata": {"labels": {"istio.io/rev": new}}}
        )
        restart = {"kubectl.kubernetes.io/restartedAt": "now"}
        for name, namespace in (("api", "pinned"), ("cart", "shop")):
            await api.run(
                api.apps.patch_namespaced_deployment,
                name,
                namespace,
                {"spec": {"template": {"metadata": {"annotations": restart}}}},
            )
        unused = await until(
            lambda: _in_use_false(api, old), f"{old} InUse=False once nothing uses it"
        )
        since = _ts(cond(unused, "InUse")["lastTransitionTime"])
        assert cond(unused, "InUse")["reason"] == "NotReferencedByAnything"
        await until(lambda: _gone(api, old), f"{old} pruned")
        # Pruned no earlier than the grace period after InUse became False (timestamps are
        # truncated to seconds, as Sail's are).
        assert time.time() >= since + 2
        assert await api.get("istiorevisions", new) is not None
        await until(lambda: _no_deployment(api, f"istiod-{old}"), f"istiod-{old} uninstalled")
        webhooks = await api.run(api.admission.list_mutating_webhook_configuration)
        names = {w.metadata.name for w in webhooks.items}
        assert f"istio-sidecar-injector-{old}" not in names
        assert f"istio-sidecar-injector-{new}" in names
        await until(
            lambda: _istio_with(api, active=new, total=1, ready=1), "Istio counting one revision"
        )


async def test_in_place_upgrade_updates_the_single_revision() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "InPlace", "tags": []},
        namespaces=[
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "cart", "replicas": 1, "rps": 5}],
            }
        ],
    )
    async with served(scenario) as (_sandbox, api):
        rev = await until(lambda: _ready(api, "default"), "revision default Ready")
        assert rev["spec"]["values"]["revision"] == ""
        pods = (await api.run(api.core.list_namespaced_pod, "shop")).items
        assert {p.metadata.annotations["istio.io/rev"] for p in pods} == {"default"}
        await api.patch("istios", "default", {"spec": {"version": "v1.31.0"}})

        async def istiod_upgraded() -> bool:
            dep = await api.run(api.apps.read_namespaced_deployment, "istiod", "istio-system")
            ready = (dep.status.updated_replicas or 0) == (dep.status.ready_replicas or 0) == 1
            return ready and dep.spec.template.spec.containers[0].image.endswith(":1.31.0")

        await until(istiod_upgraded, "istiod rolled to 1.31.0 in place")
        rev = await until(lambda: _ready(api, "default"), "revision default Ready again")
        assert rev["spec"]["version"] == "v1.31.0"
        revisions = await api.run(
            api.custom.list_cluster_custom_object, GROUP, VERSION, "istiorevisions"
        )
        assert [r["metadata"]["name"] for r in revisions["items"]] == ["default"]
        await until(
            lambda: _istio_with(api, active="default", total=1, ready=1), "Istio on default"
        )


async def test_tag_targeting_a_revision_moves_with_its_target() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "RevisionBased", "tags": ["default"]},
        namespaces=[],
    )
    async with served(scenario) as (_sandbox, api):
        await until(lambda: _ready(api, "default-v1-30-3"), "first revision Ready")
        await api.create(
            "istiorevisiontags",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "IstioRevisionTag",
                "metadata": {"name": "canary"},
                "spec": {"targetRef": {"kind": "IstioRevision", "name": "default-v1-30-3"}},
            },
        )
        tag = await until(lambda: _tag_on(api, "canary", "default-v1-30-3"), "canary on 1.30")
        assert cond(tag, "InUse")["status"] == "False"
        await api.run(
            api.core.create_namespace,
            {"metadata": {"name": "payments", "labels": {"istio.io/rev": "canary"}}},
        )
        first = await api.run(api.core.create_namespaced_pod, "payments", _pod("pay-1"))
        assert first.metadata.annotations["istio.io/rev"] == "default-v1-30-3"
        await until(lambda: _tag_in_use(api, "canary"), "canary InUse through its namespace")

        await api.patch("istios", "default", {"spec": {"version": "v1.31.0"}})
        await until(lambda: _ready(api, "default-v1-31-0"), "second revision Ready")
        await until(lambda: _tag_on(api, "default", "default-v1-31-0"), "default tag moved")
        # A tag that names a revision stays there when the Istio moves on.
        tag = await api.get("istiorevisiontags", "canary")
        assert tag is not None and tag["status"]["istioRevision"] == "default-v1-30-3"
        await api.patch(
            "istiorevisiontags",
            "canary",
            {"spec": {"targetRef": {"kind": "IstioRevision", "name": "default-v1-31-0"}}},
        )
        await until(lambda: _tag_on(api, "canary", "default-v1-31-0"), "canary moved")
        mwc = await api.run(
            api.admission.read_mutating_webhook_configuration, "istio-revision-tag-canary"
        )
        assert mwc.metadata.labels["istio.io/rev"] == "default-v1-31-0"
        svc = await api.run(
            api.core.read_namespaced_service, "istiod-revision-tag-canary", "istio-system"
        )
        assert svc.spec.selector["istio.io/rev"] == "default-v1-31-0"
        second = await api.run(api.core.create_namespaced_pod, "payments", _pod("pay-2"))
        assert second.metadata.annotations["istio.io/rev"] == "default-v1-31-0"

        await api.run(
            api.custom.delete_cluster_custom_object, GROUP, VERSION, "istiorevisiontags", "canary"
        )

        async def tag_webhook_gone() -> bool:
            hooks = await api.run(api.admission.list_mutating_webhook_configuration)
            return "istio-revision-tag-canary" not in {h.metadata.name for h in hooks.items}

        await until(tag_webhook_gone, "the deleted tag's webhook uninstalled")


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "pay"}},
        "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:1"}]},
    }


async def test_bad_input_is_refused_with_the_field_named() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "RevisionBased", "tags": ["default"]}
    )
    async with served(scenario) as (_sandbox, api):
        await until(lambda: _ready(api, "default-v1-30-3"), "revision Ready")
        with pytest.raises(ApiException) as bad_version:
            await api.patch("istios", "default", {"spec": {"version": "v1.99.0"}})
        assert bad_version.value.status == 422
        assert 'spec.version: Unsupported value: "v1.99.0"' in _message(bad_version)
        assert '"v1.31.0"' in _message(bad_version)
        with pytest.raises(ApiException) as bad_type:
            await api.patch("istios", "default", {"spec": {"updateStrategy": {"type": "Blue"}}})
        assert bad_type.value.status == 422
        assert 'spec.updateStrategy.type: Unsupported value: "Blue"' in _message(bad_type)
        with pytest.raises(ApiException) as bad_grace:
            await api.patch(
                "istios",
                "default",
                {"spec": {"updateStrategy": {"inactiveRevisionDeletionGracePeriodSeconds": -1}}},
            )
        assert "greater than or equal to 0" in _message(bad_grace)
        with pytest.raises(ApiException) as bad_ztunnelspace:
            await api.patch("istios", "default", {"spec": {"namespace": "elsewhere"}})
        assert "spec.namespace" in _message(bad_ztunnelspace)
        assert "immutable" in _message(bad_ztunnelspace)
        with pytest.raises(ApiException) as bad_ref:
            await api.create(
                "istiorevisiontags",
                {
                    "metadata": {"name": "x"},
                    "spec": {"targetRef": {"kind": "Deployment", "name": "default"}},
                },
            )
        assert 'spec.targetRef.kind: Unsupported value: "Deployment"' in _message(bad_ref)
        istio = await api.get("istios", "default")
        assert istio is not None and istio["spec"]["version"] == "v1.30.3"
        # An end-of-life version passes the schema but Sail refuses to install it.
        await api.patch("istios", "default", {"spec": {"version": "v1.28.10"}})
        refused = await until(
            lambda: _reconcile_failed(api, "istios", "default"), "Reconciled=False"
        )
        assert "end-of-life" in cond(refused, "Reconciled")["message"]
        assert refused["status"]["state"] == "ReconcileError"
        assert await api.get("istiorevisions", "default-v1-29-8") is None
        assert refused["status"]["activeRevisionName"] == "default-v1-30-3"


async def test_istio_cni_version_bump_rolls_its_daemonset() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "RevisionBased", "tags": [], "cni": True},
        namespaces=[],
    )
    async with served(scenario) as (_sandbox, api):
        cni = await until(lambda: _ready(api, "default", "istiocnis"), "IstioCNI Ready")
        assert cni["status"]["state"] == "Healthy"
        await api.patch("istiocnis", "default", {"spec": {"version": "v1.31.0"}})

        async def rolled() -> bool:
            ds = await api.run(api.apps.read_namespaced_daemon_set, "istio-cni-node", "istio-cni")
            image = ds.spec.template.spec.containers[0].image
            st = ds.status
            done = (st.updated_number_scheduled or 0) == st.desired_number_scheduled
            return bool(
                image.endswith(":1.31.0")
                and done
                and st.number_ready == st.desired_number_scheduled
            )

        await until(rolled, "istio-cni-node rolled to 1.31.0")
        await until(lambda: _ready(api, "default", "istiocnis"), "IstioCNI Ready again")


async def test_sail_scenario_serves_the_shop_on_the_sail_revision() -> None:
    scenario = load_scenario("sail")
    scenario.timings = scenario.timings.model_copy(update=FAST)
    async with served(scenario) as (sandbox, api):
        rev = await until(lambda: _ready(api, "default-v1-30-3"), "default-v1-30-3 Ready")
        assert is_true(rev, "InUse")
        tag = await until(lambda: _tag_on(api, "default", "default-v1-30-3"), "tag default")
        assert is_true(tag, "InUse")

        async def all_injected() -> bool:
            pods = (await api.run(api.core.list_pod_for_all_namespaces)).items
            meshed = [
                p
                for p in pods
                if p.metadata.namespace not in ("istio-system", "legacy")
                and p.status.phase == "Running"
                and (p.metadata.labels or {}).get("sidecar.istio.io/inject") != "false"
            ]
            revs = {(p.metadata.annotations or {}).get("istio.io/rev") for p in meshed}
            return len(meshed) > 20 and revs == {"default-v1-30-3"}

        await until(all_injected, "every meshed pod injected by default-v1-30-3")

        async def metrics() -> str:
            async with httpx.AsyncClient() as http:
                page = (await http.get(sandbox.metrics_url)).text
            return page if 'pilot_xds{revision="default-v1-30-3"' in page else ""

        page = await until(metrics, "pilot_xds of the Sail revision")
        assert 'version="1.30.3"' in page


async def test_sail_resumes_after_an_api_server_restart() -> None:
    scenario = _scenario(
        {
            "version": "v1.30.3",
            "update_strategy": "RevisionBased",
            "inactive_revision_deletion_grace_period_s": 0,
            "tags": ["default"],
        },
        namespaces=[
            {
                "name": "shop",
                "labels": {"istio.io/rev": "default"},
                "workloads": [{"name": "cart", "replicas": 1, "rps": 5}],
            }
        ],
    )
    async with served(scenario) as (sandbox, api):
        await until(lambda: _ready(api, "default-v1-30-3"), "first revision Ready")
        await api.patch("istios", "default", {"spec": {"version": "v1.31.0"}})
        await until(lambda: _ready(api, "default-v1-31-0"), "second revision Ready")
        state = snapshot(sandbox.cluster)
    restarted = Sandbox(scenario, tick_s=0.2)
    await restarted.start(state=state)
    api = Api(restarted.url)
    try:
        # Both revisions survive the restart; the old one goes once its pods are replaced.
        assert await api.get("istiorevisions", "default-v1-30-3") is not None
        await until(lambda: _tag_on(api, "default", "default-v1-31-0"), "tag kept")
        await api.run(
            api.apps.patch_namespaced_deployment,
            "cart",
            "shop",
            {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "1"}}
                    }
                }
            },
        )
        await until(lambda: _gone(api, "default-v1-30-3"), "old revision pruned after restart")
        await until(
            lambda: _istio_with(api, active="default-v1-31-0", total=1, ready=1),
            "Istio counting one revision",
        )
    finally:
        api.client.close()  # type: ignore[no-untyped-call]
        await restarted.stop()


async def test_ztunnel_follows_its_istio_and_upgrades_in_place() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "RevisionBased", "tags": [], "cni": True},
        namespaces=[],
    )
    async with served(scenario) as (_sandbox, api):
        await api.run(api.core.create_namespace, {"metadata": {"name": "ztunnel"}})
        await api.create(
            "ztunnels",
            {
                "metadata": {"name": "default"},
                "spec": {"version": "v1.30.3", "targetRef": {"kind": "Istio", "name": "default"}},
            },
        )
        zt = await until(lambda: _ready(api, "default", "ztunnels"), "ZTunnel Ready")
        assert zt["spec"]["namespace"] == "ztunnel"
        assert zt["status"]["istioRevision"] == "default-v1-30-3"
        await api.patch("ztunnels", "default", {"spec": {"version": "v1.31.0"}})

        async def rolled() -> bool:
            ds = await api.run(api.apps.read_namespaced_daemon_set, "ztunnel", "ztunnel")
            image = ds.spec.template.spec.containers[0].image
            st = ds.status
            return bool(
                image.endswith(":1.31.0")
                and st.updated_number_scheduled == st.desired_number_scheduled
                and st.number_ready == st.desired_number_scheduled
            )

        await until(rolled, "ztunnel rolled to 1.31.0")
        with pytest.raises(ApiException) as bad_ztunnel:
            await api.create(
                "ztunnels", {"metadata": {"name": "other"}, "spec": {"version": "v1.0.0"}}
            )
        assert 'spec.version: Unsupported value: "v1.0.0"' in _message(bad_ztunnel)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
async def test_kubectl_lists_the_sail_kinds() -> None:
    scenario = _scenario(
        {"version": "v1.30.3", "update_strategy": "RevisionBased", "tags": ["default"]}
    )
    async with served(scenario) as (sandbox, api):
        await until(lambda: _ready(api, "default-v1-30-3"), "revision Ready")
        out = await asyncio.to_thread(
            subprocess.run,
            [
                "kubectl",
                f"--server={sandbox.url}",
                "get",
                "istios,istiorevisions,istiorevisiontags",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert set(out.stdout.split()) == {
            "istio.sailoperator.io/default",
            "istiorevision.sailoperator.io/default-v1-30-3",
            "istiorevisiontag.sailoperator.io/default",
        }
        table = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", f"--server={sandbox.url}", "get", "istios,istiorevisions"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert table.returncode == 0, table.stderr
        lines = [line.split() for line in table.stdout.splitlines() if line.strip()]
        # The CRDs' printer columns, as `kubectl get` shows them against Sail.
        assert lines[0][:4] == ["NAME", "NAMESPACE", "PROFILE", "REVISIONS"]
        istio_row = next(row for row in lines if row[0] == "istio.sailoperator.io/default")
        assert istio_row[1:7] == ["istio-system", "1", "1", "1", "default-v1-30-3", "Healthy"]
        rev_row = next(r for r in lines if r[0] == "istiorevision.sailoperator.io/default-v1-30-3")
        assert rev_row[1:6] == ["istio-system", "True", "Healthy", "True", "v1.30.3"]


# -- facts -------------------------------------------------------------------------------


async def _ready(api: Api, name: str, plural: str = "istiorevisions") -> dict[str, Any] | None:
    obj = await api.get(plural, name)
    return obj if is_true(obj, "Ready") and is_true(obj, "Reconciled") else None


async def _istio_with(api: Api, *, active: str, total: int, ready: int) -> dict[str, Any] | None:
    istio = await api.get("istios", "default")
    status = (istio or {}).get("status") or {}
    revisions = status.get("revisions") or {}
    ok = (
        status.get("activeRevisionName") == active
        and revisions.get("total") == total
        and revisions.get("ready") == ready
    )
    return istio if ok else None


async def _tag_on(api: Api, tag: str, revision: str) -> dict[str, Any] | None:
    obj = await api.get("istiorevisiontags", tag)
    ok = (
        obj is not None
        and (obj.get("status") or {}).get("istioRevision") == revision
        and is_true(obj, "Reconciled")
    )
    return obj if ok else None


async def _tag_in_use(api: Api, name: str) -> dict[str, Any] | None:
    obj = await api.get("istiorevisiontags", name)
    return obj if is_true(obj, "InUse") else None


async def _in_use_false(api: Api, name: str) -> dict[str, Any] | None:
    obj = await api.get("istiorevisions", name)
    return obj if cond(obj, "InUse").get("status") == "False" else None


async def _gone(api: Api, name: str) -> bool:
    return await api.get("istiorevisions", name) is None


async def _no_deployment(api: Api, name: str) -> bool:
    deps = await api.run(api.apps.list_namespaced_deployment, "istio-system")
    return name not in {d.metadata.name for d in deps.items}


async def _reconcile_failed(api: Api, plural: str, name: str) -> dict[str, Any] | None:
    obj = await api.get(plural, name)
    return obj if cond(obj, "Reconciled").get("status") == "False" else None
