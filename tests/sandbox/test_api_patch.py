"""Patch formats and server-side apply merging (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from istio_sandbox.api.apply import apply, fields_v1
from istio_sandbox.api.patch import (
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from istio_sandbox.api.validation import labels_errors, name_errors


def _deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                        {"name": "istio-proxy", "image": "proxyv2:1.30.3"},
                    ]
                }
            }
        },
    }


def test_merge_patch_rfc7386() -> None:
    out = merge_patch(_deployment(), {"metadata": {"labels": {"tier": None, "x": "y"}}})
    assert out["metadata"]["labels"] == {"app": "web", "x": "y"}
    # Lists are replaced wholesale by a merge patch.
    out = merge_patch(_deployment(), {"spec": {"template": {"spec": {"containers": []}}}})
    assert out["spec"]["template"]["spec"]["containers"] == []


def test_strategic_merge_merges_containers_and_env_by_name() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
                    ]
                }
            }
        }
    }
    out = strategic_merge_patch(_deployment(), patch)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "istio-proxy"]
    assert containers[0]["image"] == "app:2"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_strategic_merge_delete_directive_and_null() -> None:
    patch = {
        "metadata": {"labels": {"tier": None}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "istio-proxy", "$patch": "delete"}]}}
        },
    }
    out = strategic_merge_patch(_deployment(), patch)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert out["metadata"]["labels"] == {"app": "web"}


def test_kubectl_rollout_restart_patch() -> None:
    stamp = "2024-01-01T00:00:00Z"
    patch = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    out = strategic_merge_patch(_deployment(), patch)
    template = out["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == stamp
    assert len(template["spec"]["containers"]) == 2


def test_json_patch_rfc6902() -> None:
    ops = [
        {"op": "add", "path": "/metadata/labels/istio.io~1rev", "value": "1-31-0"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "app:3"},
        {"op": "test", "path": "/metadata/name", "value": "web"},
        {"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/copied"},
    ]
    out = json_patch(_deployment(), ops)
    assert out["metadata"]["labels"] == {"app": "web", "istio.io/rev": "1-31-0", "copied": "web"}
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "app:3"


def test_json_patch_failures() -> None:
    with pytest.raises(PatchError) as failed_test:
        json_patch(_deployment(), [{"op": "test", "path": "/metadata/name", "value": "x"}])
    assert failed_test.value.code == 422
    with pytest.raises(PatchError, match="missing path"):
        json_patch(_deployment(), [{"op": "remove", "path": "/spec/nope/x"}])
    with pytest.raises(PatchError) as malformed:
        json_patch(_deployment(), {"op": "add"})
    assert malformed.value.code == 400


def test_apply_records_manager_and_prunes_fields_it_stopped_applying() -> None:
    first = {"metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}}
    created = apply(None, first, "installer", "v1")
    entry = created["metadata"]["managedFields"][0]
    assert entry["manager"] == "installer" and entry["operation"] == "Apply"
    assert "f:a" in entry["fieldsV1"]["f:metadata"]["f:labels"]
    created["metadata"]["labels"]["other"] = "kept"  # written by someone else
    second = {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"x": "2"}}
    updated = apply(created, second, "installer", "v1")
    assert updated["metadata"]["labels"] == {"a": "1", "other": "kept"}
    assert updated["data"] == {"x": "2"}
    assert len(updated["metadata"]["managedFields"]) == 1


def test_fields_v1_keys_lists_by_merge_key() -> None:
    fields = fields_v1(_deployment())
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(containers) == {'k:{"name":"app"}', 'k:{"name":"istio-proxy"}'}


def test_name_and_label_validation() -> None:
    assert name_errors("pods", "web-1.a") == []
    assert name_errors("pods", "Bad_Name")
    assert name_errors("namespaces", "a.b")  # namespaces are DNS labels, no dots
    assert name_errors("services", "1abc")  # services must start with a letter
    assert labels_errors({"istio.io/rev": "1-31-0", "app": ""}) == []
    bad = labels_errors({"bad key": "x", "ok": "-bad-", "a/b/c": "x"})
    assert [e.value for e in bad] == ["bad key", "-bad-", "a/b/c"]
