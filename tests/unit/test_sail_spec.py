"""``installer.strategy: sail``: what the spec accepts and the refusals naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from istio_upgrade.models.permissions import permissions_input, required_permissions
from istio_upgrade.models.spec import UpgradeSpec, sail_version, workflow_id_for


def _spec(installer: dict[str, Any], **extra: Any) -> UpgradeSpec:
    return UpgradeSpec.model_validate(
        {"cluster": {"name": "c1"}, "target": {"version": "1.31.0"}, "installer": installer} | extra
    )


def test_sail_defaults_and_the_operators_revision_name() -> None:
    spec = _spec({"strategy": "sail"})
    assert spec.installer.sail is not None
    assert spec.installer.sail.istio == "default"
    assert spec.installer.sail.prune == "sail"
    # sail-operator controllers/istio getActiveRevisionName: <istio>-<version dashed>.
    assert spec.target_revision == "default-v1-31-0"
    assert workflow_id_for(spec) == "istio-upgrade.c1.default-v1-31-0"


def test_sail_names_its_istio_and_prune_mode() -> None:
    spec = _spec({"strategy": "sail", "sail": {"istio": "mesh", "prune": "delete"}})
    assert spec.target_revision == "mesh-v1-31-0"
    assert spec.installer.sail_settings.prune == "delete"


def test_sail_version_spelling() -> None:
    assert sail_version("1.31.0") == "v1.31.0"
    assert sail_version("v1.31.0") == "v1.31.0"


@pytest.mark.parametrize(
    ("installer", "extra", "says"),
    [
        ({"strategy": "sail", "bundle_path": "/b.yaml"}, {}, "remove installer.bundle_path"),
        (
            {"strategy": "sail", "bundle_configmap": {"namespace": "x", "name": "y"}},
            {},
            "takes no bundle",
        ),
        ({"sail": {"istio": "default"}}, {}, "installer.strategy to sail"),
        ({"strategy": "sail", "sail": {"istio": "Bad_Name"}}, {}, "installer.sail.istio"),
        ({"strategy": "sail", "sail": {"prune": "never"}}, {}, "installer.sail.prune"),
        ({"strategy": "sail", "sail": {"extra": 1}}, {}, "installer.sail.extra"),
        ({"strategy": "other"}, {}, "installer.strategy"),
        ({"strategy": "sail"}, {"crds": {"bundle_path": "/crds.yaml"}}, "crds: the Sail"),
        (
            {"strategy": "sail"},
            {"rollback": {"keep_new_revision": True}},
            "remove rollback.keep_new_revision",
        ),
    ],
)
def test_sail_refusals_name_the_field(
    installer: dict[str, Any], extra: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        _spec(installer, **extra)
    assert says in str(raised.value)


def test_a_revision_other_than_the_operators_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        UpgradeSpec.model_validate(
            {
                "cluster": {"name": "c1"},
                "target": {"version": "1.31.0", "revision": "canary"},
                "installer": {"strategy": "sail"},
            }
        )
    assert "'default-v1-31-0'; omit target.revision" in str(raised.value)
    # The operator's own name is accepted as given.
    spec = UpgradeSpec.model_validate(
        {
            "cluster": {"name": "c1"},
            "target": {"version": "1.31.0", "revision": "default-v1-31-0"},
            "installer": {"strategy": "sail"},
        }
    )
    assert spec.target_revision == "default-v1-31-0"


def test_the_precheck_asks_for_sailoperator_rights_not_the_bundles() -> None:
    needs = required_permissions(permissions_input(_spec({"strategy": "sail"}), None))
    sail = {(n.verb, n.resource) for n in needs if n.group == "sailoperator.io"}
    assert {("get", "istios"), ("patch", "istios"), ("get", "istiorevisions")} <= sail
    assert {("patch", "istiorevisiontags"), ("list", "istiocnis"), ("patch", "ztunnels")} <= sail
    assert all(n.component == "installer-sail" for n in needs if n.group == "sailoperator.io")
    # Sail writes the tag webhooks and istiod itself: the manifests installer's rights are
    # not asked for.
    assert not [n for n in needs if n.component == "installer-manifests"]
    manifests = required_permissions(permissions_input(_spec({"bundle_path": "/b.yaml"}), None))
    assert not [n for n in manifests if n.group == "sailoperator.io"]
