"""Least privilege, proved against a sandbox that enforces RBAC.

Exactly what ``kubectl kustomize deploy/`` renders (the migration base and the ``manifests``
installer component) is applied as the cluster admin; the worker then runs as its
ServiceAccount (a kubeconfig holding that ServiceAccount's token) an upgrade with CRDs and a
bundle carrying istiod's own roles, a rollback (``bad-canary``) and a revision removal, and
all succeed. The API server's request log then shows that every right a part of ``deploy/``
grants was used by those runs, except the few listed in :data:`RARE` with the path that needs
them. Finally each granted right is taken away in turn: the permission precheck names it
(verb, ``group/resource``, namespace), and an upgrade or a dry run without it is refused
before its first write.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from istio_sandbox.istio.gateway_api import render_gateway_api_crds
from istio_upgrade.activities import discovery, permissions
from istio_upgrade.activities.kube_client import Kube, KubeClients
from istio_upgrade.client import start_removal
from istio_upgrade.devenv import ScrapeTarget
from istio_upgrade.devenv.bundles import crds_bundle, revision_bundle
from istio_upgrade.istio.manifests import load_bundle_yaml
from istio_upgrade.models import ClusterRef, UpgradeResult, UpgradeSpec
from istio_upgrade.models.permissions import PermissionReport, permissions_input
from istio_upgrade.models.removal import RemoveRevisionSpec
from istio_upgrade.planning import plan_upgrade
from istio_upgrade.worker import build_worker
from tests.integration.test_upgrade_rollback import CANARY_GATE
from tests.integration.upgrade_stack import (
    Stack,
    failure,
    fast_spec,
    istiod_deployments,
    pod_revisions,
    record_history,
)
from tests.unit.test_deploy_rbac import (
    Grant,
    kustomize,
    matching,
    upstream_rbac_extras,
    worker_grants,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH"),
]

WORKER_SA = ("istio-upgrade", "istio-upgrade-worker")
WORKER_USER = "system:serviceaccount:istio-upgrade:istio-upgrade-worker"

Atom = tuple[str | None, str, str, str, str]
"""(namespace of the binding or None, verb, API group, resource[/subresource], name)."""

RARE: dict[tuple[str, str, str], str] = {
    # Diagnostics of stragglers: only when verification finds a pod on the wrong revision
    # (tests/integration/test_upgrade_faults.py has them).
    ("get", "", "pods/log"): "proxy log tail of a straggler",
    ("list", "", "events"): "Events of a straggler",
    # Workloads of these kinds migrated by their pod template's istio.io/rev (an opted-in
    # StatefulSet or DaemonSet in an unlabelled namespace): the shapes scenario.
    ("get", "apps", "statefulsets"): "a StatefulSet migrated by its pod template",
    ("get", "apps", "daemonsets"): "a DaemonSet migrated by its pod template",
    # Gateway API gateways and waypoints in the plan (tests/integration/test_upgrade_shapes.py).
    ("get", "gateway.networking.k8s.io", "gateways"): "a Gateway API gateway in the plan",
    ("patch", "gateway.networking.k8s.io", "gateways"): "a Gateway API gateway in the plan",
    # OnDelete StatefulSets/DaemonSets replace pods only when deleted (shapes scenario).
    ("delete", "", "pods"): "an OnDelete workload in the plan",
    # A CRD the target version adds; the sandbox already serves every CRD of the bundle, so
    # the CRD step only patches.
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"): "a CRD new in the target",
    # The istiod chart's autoscale.yaml; the sandbox serves no autoscaling API, so the bundle
    # applied here has no HorizontalPodAutoscaler.
    ("create", "autoscaling", "horizontalpodautoscalers"): "the chart's HPA",
    ("patch", "autoscaling", "horizontalpodautoscalers"): "the chart's HPA",
    ("delete", "autoscaling", "horizontalpodautoscalers"): "the chart's HPA",
    # Not sent by the worker at all (it lists and polls, never watches, never reads one pod);
    # granted because tests/unit/test_cli_deploy.py pins them. The precheck never asks.
    ("watch", "", "namespaces"): "pinned, unused",
    ("watch", "", "pods"): "pinned, unused",
    ("get", "", "pods"): "pinned, unused",
    ("watch", "apps", "deployments"): "pinned, unused",
}
"""Granted rights that these runs need not use, each with the path that does use it."""

PINNED_UNUSED = {key for key, why in RARE.items() if why == "pinned, unused"}


def mesh_crds() -> list[dict[str, Any]]:
    """CRDs a production mesh has that the scenarios leave out: Gateway API's (commonly
    installed; discovery lists its Gateways) and Istio's EnvoyFilter (in the base chart's
    ``crd-all.gen.yaml``; discovery lists them as a risk)."""
    envoy_filter = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "envoyfilters.networking.istio.io"},
        "spec": {
            "group": "networking.istio.io",
            "names": {
                "kind": "EnvoyFilter",
                "listKind": "EnvoyFilterList",
                "plural": "envoyfilters",
                "singular": "envoyfilter",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha3",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    return [*render_gateway_api_crds(), envoy_filter]


def apply_as_admin(sandbox: Any, docs: list[dict[str, Any]]) -> None:
    """``kubectl apply`` of ``docs`` with the sandbox's admin kubeconfig."""
    subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def bundle_with_roles(revision: str = "1-31-0") -> str:
    """The sandbox's istiod rendering plus the Role, RoleBinding and gateway controller
    ClusterRole upstream's chart also renders (no HPA: the sandbox has no autoscaling API)."""
    extras = [o for o in upstream_rbac_extras(revision) if o["kind"] != "HorizontalPodAutoscaler"]
    objects = load_bundle_yaml(revision_bundle("1.31.0", revision)) + extras
    return yaml.safe_dump_all(objects)


def spec_for(cluster: str, prometheus_url: str, **overrides: Any) -> UpgradeSpec:
    return fast_spec(
        prometheus_url,
        cluster={"name": cluster},
        installer={"bundle_yaml": bundle_with_roles()},
        crds={"bundle_yaml": crds_bundle()},
        **overrides,
    )


@dataclass
class WorkerStack(Stack):
    """A :class:`Stack` whose worker authenticates as the worker's ServiceAccount."""

    worker_kubeconfig: Path | None = None


@contextlib.asynccontextmanager
async def as_worker(
    client: Client,
    sandbox_factory: Any,
    prometheus_factory: Any,
    scenario: str,
    workdir: Path,
    docs: list[dict[str, Any]],
    *,
    prometheus: bool = True,
) -> AsyncIterator[WorkerStack]:
    """A sandbox enforcing RBAC with ``docs`` applied, and a worker running as the worker's
    ServiceAccount (its token in the worker's kubeconfig, nothing else)."""
    sandbox = await sandbox_factory(scenario, rbac=True)
    await asyncio.to_thread(apply_as_admin, sandbox, mesh_crds() + docs)
    token = sandbox.issue_token(service_account=WORKER_SA)
    assert token.user == WORKER_USER
    kubeconfig = sandbox.write_kubeconfig_for(token, workdir / f"{scenario}-worker.kubeconfig")
    server = None
    if prometheus:
        server = await prometheus_factory([ScrapeTarget(address=sandbox.address)])
        await server.wait_for_series("istio_requests_total", timeout_s=30)
    stack = WorkerStack(
        client, sandbox, server, task_queue=f"least-privilege-{uuid.uuid4().hex[:8]}"
    )
    stack.worker_kubeconfig = kubeconfig
    stack.worker = build_worker(client, task_queue=stack.task_queue, kubeconfig=str(kubeconfig))
    async with stack.worker:
        yield stack


def worker_requests(stack: Stack) -> list[dict[str, Any]]:
    entries, _ = stack.sandbox.requests()
    return [e for e in entries if e["user"] == WORKER_USER]


def atoms_of(grants: list[Grant]) -> dict[Atom, Grant]:
    out: dict[Atom, Grant] = {}
    for g in grants:
        for verb in g.rule.get("verbs") or []:
            for group in g.rule.get("apiGroups") or []:
                for resource in g.rule.get("resources") or []:
                    for name in g.rule.get("resourceNames") or [""]:
                        out[(g.namespace, verb, group, resource, name)] = g
    return out


def used_atoms(grants: list[Grant], requests: list[dict[str, Any]]) -> set[Atom]:
    """The granted rights these requests exercised.

    Besides each request's own verb: a server-side apply answered 201 created its object,
    which the API server also authorises as ``create``; a write of a role the worker could
    make only with ``escalate`` (istiod's grant far more than it holds), of a binding only
    with ``bind`` on its role.
    """
    atoms = atoms_of(grants)
    used: set[Atom] = set()

    def mark(verb: str, group: str, resource: str, sub: str, namespace: str, name: str) -> None:
        hits = matching(grants, verb, group, resource, sub, namespace or None, name)
        assert hits, f"{verb} {group}/{resource}/{sub} {namespace}/{name} was not granted"
        combined = f"{resource}/{sub}" if sub else resource
        for atom in atoms:
            ns, a_verb, a_group, a_resource, a_name = atom
            if (
                a_verb == verb
                and a_group == group
                and a_resource == combined
                and a_name in ("", name)
                and any(h is atoms[atom] for h in hits)
                and ns in (None, namespace or None)
            ):
                used.add(atom)

    for e in requests:
        if e["code"] in (401, 403, 0) or e["resource"] in (
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
        ):
            continue
        group, resource, sub = e["apiGroup"], e["resource"], e["subresource"]
        namespace, name = e["namespace"], e["name"]
        mark(e["verb"], group, resource, sub, namespace, name)
        if e["verb"] == "patch" and e["code"] == 201:
            mark("create", group, resource, sub, namespace, name)
        ok = 200 <= e["code"] < 300 and e["verb"] in ("create", "patch")
        if ok and resource in ("clusterroles", "roles"):
            mark("escalate", group, resource, "", namespace, name)
        if ok and resource == "clusterrolebindings":
            mark("bind", group, "clusterroles", "", "", "")
        if ok and resource == "rolebindings":
            mark("bind", group, "roles", "", namespace, "")
    return used


def key_of(atom: Atom) -> tuple[str, str, str]:
    return atom[1], atom[2], atom[3]


async def test_deploy_rbac_is_enough_and_every_grant_is_used(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    docs = kustomize()
    grants = worker_grants(docs)
    client = temporal_local.client
    async with (
        as_worker(client, sandbox_factory, prometheus_factory, "demo", tmp_path, docs) as demo,
        as_worker(client, sandbox_factory, prometheus_factory, "bad-canary", tmp_path, docs) as bad,
    ):

        async def upgrade_then_remove() -> None:
            handle = await demo.start(spec_for("lp-upgrade", demo.prometheus.url))
            result: UpgradeResult = await handle.result()
            assert result.outcome == "SUCCEEDED", result.summary
            assert result.precheck is not None
            assert not [f for f in result.precheck.findings if "PERMISSION" in f.code]
            assert set(pod_revisions(demo, "frontend").values()) == {"1-31-0"}
            # The bare pod kept 1-30-3; once it is gone the removal takes the old revision.
            assert not result.old_revision_removed
            assert demo.delete("/api/v1/namespaces/batch/pods/debug-shell") == 200
            removal = await start_removal(
                client,
                RemoveRevisionSpec(
                    cluster=ClusterRef(name="lp-upgrade", context="sandbox"), revision="1-30-3"
                ),
                task_queue=demo.task_queue,
            )
            removed = await removal.result()
            assert removed.outcome == "REMOVED", removed.summary
            assert "istiod-1-30-3" not in istiod_deployments(demo)

        async def roll_back() -> None:
            gate = {**CANARY_GATE, "on_inconclusive": "rollback"}
            spec = spec_for(
                "lp-rollback",
                bad.prometheus.url,
                migration={"canary": ["checkout", "cart"]},
                gate=gate,
            )
            cause = await failure(await bad.start(spec))
            assert cause.type == "GateFailed", cause.message
            assert istiod_deployments(bad) == {"istiod-1-30-3"}
            for ns in ("checkout", "cart"):
                assert set(pod_revisions(bad, ns).values()) == {"1-30-3"}, ns

        await asyncio.gather(upgrade_then_remove(), roll_back())
        requests = worker_requests(demo) + worker_requests(bad)

    refused = [e for e in requests if e["code"] in (401, 403)]
    assert not refused, refused[:10]
    granted = atoms_of(grants)
    unused = set(granted) - used_atoms(grants, requests)
    unexplained = sorted({key_of(a) for a in unused} - set(RARE), key=str)
    assert not unexplained, f"granted by deploy/ but never used: {unexplained}"
    # Exactly the listed ones: a rare right these runs come to use leaves the list.
    used_rare = sorted(set(RARE) - {key_of(a) for a in unused}, key=str)
    assert not used_rare, f"listed as rare but used: {used_rare}"


def _without(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> list[Any]:
    """``rules`` with ``verb`` on ``group``/``resource`` taken out, nothing else."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
            out.append(rule)
            continue
        rest = [r for r in rule["resources"] if r != resource]
        if rest:
            out.append({**rule, "resources": rest})
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            out.append({**rule, "resources": [resource], "verbs": verbs})
    return out


def _role_path(role: str) -> str:
    kind, _, rest = role.partition("/")
    if kind == "ClusterRole":
        return f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{rest}"
    namespace, _, name = rest.partition("/")
    return f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}"


async def set_rules(admin: Kube, role: str, rules: list[dict[str, Any]]) -> None:
    """Replace a role's rules, as the cluster admin (a merge patch replaces the list)."""
    await asyncio.to_thread(
        admin.request,
        "PATCH",
        _role_path(role),
        body={"rules": rules},
        content_type="application/merge-patch+json",
    )


def _flagged(report: PermissionReport, verb: str, group: str, resource: str) -> list[str]:
    base, _, sub = resource.partition("/")
    return [
        m.message
        for m in report.missing
        if (m.verb, m.group, m.resource, m.subresource) == (verb, group, base, sub)
    ]


async def test_without_any_one_granted_right_the_precheck_refuses(
    temporal_local: WorkflowEnvironment,
    sandbox_factory: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    docs = kustomize()
    grants = worker_grants(docs)
    async with as_worker(
        temporal_local.client,
        sandbox_factory,
        prometheus_factory,
        "demo",
        tmp_path,
        docs,
        prometheus=False,
    ) as stack:
        admin = KubeClients(str(stack.sandbox.kubeconfig)).for_cluster(
            ClusterRef(name="lp", context="sandbox")
        )
        kube = KubeClients(str(stack.worker_kubeconfig)).for_cluster(
            ClusterRef(name="lp", context="sandbox")
        )
        spec = spec_for("lp-refused", "http://127.0.0.1:9")
        inventory = await asyncio.to_thread(discovery.discover, kube)
        plan, _ = plan_upgrade(inventory, spec, "lp-refused", per_workload=True)
        check_input = permissions_input(spec, plan, inventory.gateway_api_version is not None)

        def check() -> PermissionReport:
            return permissions.check(kube, check_input)

        full = await asyncio.to_thread(check)
        assert full.missing == [] and full.unchecked == "", full
        assert full.checked > 20

        roles: dict[str, list[dict[str, Any]]] = {}
        for g in grants:
            roles.setdefault(g.role, []).append(g.rule)

        not_flagged: list[str] = []
        for (_ns, verb, group, resource, _name), grant in sorted(atoms_of(grants).items(), key=str):
            original = roles[grant.role]
            reduced = _without(copy.deepcopy(original), verb, group, resource)
            await set_rules(admin, grant.role, reduced)
            try:
                report = await asyncio.to_thread(check)
            finally:
                await set_rules(admin, grant.role, original)
            flagged = _flagged(report, verb, group, resource)
            key = (verb, group, resource)
            if key in PINNED_UNUSED:
                assert not flagged and report.ok, (key, report.missing)
                continue
            if key in RARE:
                continue
            if not flagged:
                not_flagged.append(f"{verb} {group or 'core'}/{resource} ({grant.role})")
                continue
            ref = f"{group or 'core'}/{resource}"
            assert any(f"may not {verb} {ref}" in m for m in flagged), flagged
        assert not not_flagged, f"removing these did not refuse the upgrade: {not_flagged}"

        # The workflow: an upgrade without `patch` on Deployments is refused before any write,
        # and a dry run (what `istio-upgrade plan` runs) names the same permission.
        role = "ClusterRole/istio-upgrade-worker"
        original = roles[role]
        reduced = _without(copy.deepcopy(original), "patch", "apps", "deployments")
        await set_rules(admin, role, reduced)
        _, mark = stack.sandbox.requests()
        for dry_run in (True, False):
            handle = await stack.start(
                spec.model_copy(update={"dry_run": dry_run}), suffix=f".dry-{dry_run}"
            )
            cause = await failure(handle)
            if not dry_run:
                await record_history(handle, "permission-refused-3")
            assert cause.type == "PrecheckFailed", cause.message
            assert "may not patch apps/deployments" in cause.message, cause.message
            assert "restart workloads" in cause.message
            assert 'resources: ["deployments"], verbs: ["patch"]' in cause.message
            result = UpgradeResult.model_validate(cause.details[0])
            assert result.precheck is not None
            codes = {f.code for f in result.precheck.errors}
            assert codes == {"PERMISSION_MISSING"}, result.precheck.errors
        entries, _ = stack.sandbox.requests(mark)
        writes = [
            e
            for e in entries
            if e["user"] == WORKER_USER
            and e["verb"] in ("create", "patch", "update", "delete")
            and e["resource"] != "selfsubjectaccessreviews"
        ]
        assert not writes, writes

        # Refused discovery: every missing right it can tell without a plan is named at once,
        # not only the first request refused (ReplicaSets are listed before pods).
        await set_rules(admin, role, original)
        reduced = _without(copy.deepcopy(original), "list", "", "pods")
        reduced = _without(reduced, "list", "apps", "replicasets")
        await set_rules(admin, role, reduced)
        handle = await stack.start(spec.model_copy(update={"dry_run": True}), suffix=".no-list")
        cause = await failure(handle)
        await record_history(handle, "permission-discovery-refused-3")
        assert cause.type == "PrecheckFailed", cause.message
        assert "discovery was refused: GET /apis/apps/v1/replicasets" in cause.message
        assert "may not list core/pods in all namespaces" in cause.message, cause.message
        assert "may not list apps/replicasets in all namespaces" in cause.message
