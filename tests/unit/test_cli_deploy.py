"""The manifests in deploy/ fit together and match what the worker reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def objects(root: Path = DEPLOY) -> list[dict[str, Any]]:
    """The files the kustomization lists, directories followed (without kustomize's renames:
    the worker Deployment appears once, as its template in worker/)."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        path = (root / name).resolve()
        if path.is_dir():
            found = objects(path)
            docs += [d for d in found if not any(d == seen for seen in docs)]
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_worker_runs_as_the_bound_service_account() -> None:
    pod = one("Deployment", "istio-upgrade-worker")["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    one("ServiceAccount", account)
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        bindings = [o for o in objects() if o["kind"] == kind]
        assert bindings, kind
        for binding in bindings:
            assert {"kind": "ServiceAccount", "name": account, "namespace": "istio-upgrade"} in (
                binding["subjects"]
            )
            one(binding["roleRef"]["kind"], binding["roleRef"]["name"])


def test_config_sets_what_the_worker_reads() -> None:
    import istio_upgrade.worker as worker
    from istio_upgrade.workflows.upgrade import TASK_QUEUE

    data = one("ConfigMap", "istio-upgrade-worker")["data"]
    for variable in data:
        assert variable in (worker.__doc__ or ""), f"{variable} is not read by the worker"
    assert data["TEMPORAL_TASK_QUEUE"] == TASK_QUEUE


def test_worker_uses_its_service_account_not_a_mounted_kubeconfig() -> None:
    # Without KUBECONFIG the worker falls back to in-cluster config, whose token the client
    # library refreshes; a hand-made kubeconfig with tokenFile would read the token once.
    assert "KUBECONFIG" not in one("ConfigMap", "istio-upgrade-worker")["data"]
    pod = one("Deployment", "istio-upgrade-worker")["spec"]["template"]["spec"]
    assert pod.get("automountServiceAccountToken", True)
    assert not pod["containers"][0].get("volumeMounts")


def test_worker_may_patch_but_not_create_namespaces_or_workloads() -> None:
    rules = one("ClusterRole", "istio-upgrade-worker")["rules"]

    def verbs(group: str, resource: str) -> set[str]:
        return {
            verb
            for rule in rules
            if group in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert verbs("", "namespaces") == {"get", "list", "watch", "patch"}
    assert verbs("apps", "deployments") == {"get", "list", "watch", "patch"}
    assert verbs("", "pods") == {"get", "list", "watch"}
    assert "delete" not in verbs("", "pods")
    assert not verbs("", "secrets")
    # Only the manifests installer exists; no grant for an installer that is not there.
    assert not any("sailoperator.io" in rule.get("apiGroups", []) for rule in rules)
