"""Precheck: ambient mode refused before any write; owners that fight back named."""

from __future__ import annotations

from istio_upgrade.activities.discovery import gitops_owner
from istio_upgrade.planning import plan_upgrade
from tests.unit.plan_fixtures import ENABLED, inventory, spec


def findings(inv: object) -> dict[str, tuple[str, str]]:
    _, report = plan_upgrade(inv, spec(), "w")  # type: ignore[arg-type]
    return {f.code: (f.severity, f.message) for f in report.findings}


def test_ambient_namespaces_refuse_the_upgrade_naming_them() -> None:
    inv = inventory({"a": ENABLED, "mesh": {"istio.io/dataplane-mode": "ambient"}})
    severity, message = findings(inv)["AMBIENT_NOT_SUPPORTED"]
    assert severity == "error"
    assert "namespaces mesh" in message and "ztunnel" in message and "1.x+1" in message


def test_a_ztunnel_without_ambient_namespaces_still_refuses() -> None:
    inv = inventory({"a": ENABLED}).model_copy(
        update={"ambient": ["DaemonSet istio-system/ztunnel (1.30.3)"]}
    )
    assert "DaemonSet istio-system/ztunnel (1.30.3)" in findings(inv)["AMBIENT_NOT_SUPPORTED"][1]


def test_gitops_marks_are_recognised() -> None:
    assert gitops_owner({"annotations": {"argocd.argoproj.io/tracking-id": "x:/Namespace:/a"}}) == (
        "Argo CD"
    )
    assert gitops_owner({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}) == "Flux"
    assert gitops_owner({"labels": {"team": "x"}}) is None


def test_gitops_owned_namespaces_and_helm_releases_are_warnings_with_what_to_do() -> None:
    inv = inventory({"a": ENABLED, "b": ENABLED})
    inv.namespace("a").managed_by = "Argo CD"  # type: ignore[union-attr]
    inv.revisions[0].helm_release = "istio-system/istiod"
    found = findings(inv)
    severity, message = found["GITOPS_OWNED_NAMESPACES"]
    assert severity == "warning" and "Argo CD: a" in message and "pause self-heal" in message
    severity, message = found["HELM_RELEASE"]
    assert (
        severity == "warning" and "istio-system/istiod" in message and "helm uninstall" in message
    )
