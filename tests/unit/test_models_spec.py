"""``UpgradeSpec`` validation: every error names the field and the fix; examples stay valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from istio_upgrade.models import (
    AbortRequest,
    ApproveRequest,
    Progress,
    UpgradeResult,
    UpgradeSpec,
    progress_markdown,
    workflow_id_for,
)
from istio_upgrade.models.removal import RemoveRevisionSpec, removal_workflow_id
from istio_upgrade.models.schema import SCHEMA_PATH, render
from istio_upgrade.models.selector import parse_selector, selector_matches

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def base(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"cluster": {"name": "prod"}, "target": {"version": "1.31.0"}}
    doc.update(overrides)
    return doc


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        UpgradeSpec.model_validate(doc)
    return str(info.value)


def test_minimal_spec_derives_revision_and_id() -> None:
    spec = UpgradeSpec.model_validate(base())
    assert spec.target.revision == "1-31-0"
    assert workflow_id_for(spec) == "istio-upgrade.prod.1-31-0"
    assert spec.promote.tags == ["default"]
    assert spec.gate.slos and spec.gate.slos[0].objective == 0.999
    assert not spec.dry_run and not spec.force


def test_explicit_revision_is_kept() -> None:
    spec = UpgradeSpec.model_validate(base(target={"version": "1.31.0", "revision": "canary-124"}))
    assert workflow_id_for(spec) == "istio-upgrade.prod.canary-124"


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        (base(colour="red"), ["colour", "Extra inputs are not permitted"]),
        (base(migration={"batch": [["a"]]}), ["migration.batch", "Extra inputs"]),
        (base(target={"version": "1.24"}), ["target.version", "like 1.31.0"]),
        (base(target={"version": "latest"}), ["target.version"]),
        (base(target={"version": "1.31.0", "revision": "1.31.0"}), ["target.revision", "DNS-1123"]),
        (
            base(target={"version": "1.31.0", "revision": "default"}),
            ["target.revision", "reserved"],
        ),
        (base(cluster={"name": "Prod_EU"}), ["cluster.name", "DNS-1123"]),
        (base(cluster={"name": "p", "prometheus_url": "prom:9090"}), ["prometheus_url", "http://"]),
        (
            base(cluster={"name": "p", "prometheus_url": "https://u:hunter2@prom:9090"}),
            ["cluster.prometheus_url", "credentials", "history"],
        ),
        (
            base(gate={"prometheus_url": "http://u:hunter2@prom:9090"}),
            ["gate.prometheus_url", "credentials"],
        ),
        (base(source_revision="1-31-0"), ["source_revision", "target must be a new revision"]),
        (base(migration={"selector": "a in ()"}), ["migration.selector", "kubectl -l"]),
        (base(migration={"batches": [["a"], []]}), ["migration.batches[1] is empty"]),
        (base(migration={"batches": [["a"], ["a"]]}), ["migration.batches[1]", "'a'"]),
        (base(migration={"batches": [["A"]]}), ["migration.batches[0]", "DNS-1123"]),
        (base(migration={"batches": [["a"]], "canary": ["a"]}), ["canary", "first of"]),
        (base(migration={"growth_factor": 0.5}), ["growth_factor", "greater than or equal to 1"]),
        (base(migration={"max_concurrent_restarts": 0}), ["max_concurrent_restarts"]),
        (
            base(installer={"bundle_path": "/x", "bundle_yaml": "---"}),
            ["installer", "only one of"],
        ),
        (base(installer={"strategy": "helm"}), ["installer.strategy", "manifests"]),
        (base(promote={"tags": ["Prod"]}), ["promote.tags", "DNS-1123"]),
        (base(cleanup={"grace_seconds": -1}), ["cleanup.grace_seconds"]),
        (base(gate={"soak_seconds": 60, "max_soak_seconds": 30}), ["max_soak_seconds"]),
    ],
)
def test_invalid_specs_name_field_and_fix(doc: dict[str, Any], needles: list[str]) -> None:
    message = error_of(doc)
    for needle in needles:
        assert needle in message, message


def test_selector_parsing_and_matching() -> None:
    assert parse_selector("") == []
    reqs = parse_selector("team in (a, b),env!=dev,!legacy,tier,app=web")
    assert [r.operator for r in reqs] == ["in", "!=", "!", "exists", "="]
    labels = {"team": "a", "tier": "1", "app": "web"}
    assert selector_matches("team in (a,b),env!=dev,!legacy,tier,app=web", labels)
    assert not selector_matches("team notin (a)", labels)
    assert not selector_matches("legacy", labels)
    assert selector_matches("env notin (dev)", labels)
    with pytest.raises(ValueError, match="not a valid label key"):
        parse_selector("bad key=1")


def test_operator_messages_validate() -> None:
    with pytest.raises(ValidationError, match="approver"):
        ApproveRequest.model_validate({"approver": ""})
    with pytest.raises(ValidationError, match="reason"):
        AbortRequest.model_validate({})
    assert ApproveRequest(approver="alice", comment="ok").approver == "alice"


def test_progress_markdown_mentions_phase_batches_and_waits() -> None:
    progress = Progress.model_validate(
        {
            "cluster": "prod",
            "source_revision": "1-30-3",
            "target_revision": "1-31-0",
            "phase": "SOAKING",
            "waiting_for": "approval: migrate batch 1",
            "batches": [{"index": 0, "namespaces": ["a", "b"], "status": "soaking"}],
        }
    )
    text = progress_markdown(progress)
    assert "1-30-3 → 1-31-0" in text and "SOAKING" in text
    assert "| 0 | a, b | soaking |" in text
    assert "approval: migrate batch 1" in text


def test_result_round_trips_through_json() -> None:
    result = UpgradeResult(outcome="ROLLED_BACK", summary="x", upgrade_id="u", target_revision="r")
    assert UpgradeResult.model_validate_json(result.model_dump_json()) == result


def upgrade_examples() -> list[Path]:
    return sorted(EXAMPLES.glob("upgrade-*.yaml")) + sorted(EXAMPLES.glob("upgrade-*.json"))


def test_every_example_is_a_valid_spec() -> None:
    found = [p for p in upgrade_examples() if not p.name.endswith(".schema.json")]
    assert {p.name for p in found} >= {
        "upgrade-demo.yaml",
        "upgrade-minimal.yaml",
        "upgrade-ui.json",
    }
    for path in found:
        text = path.read_text()
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        spec = UpgradeSpec.model_validate(doc)
        assert spec.target.revision, path


def test_published_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == render(), (
        "docs/examples/upgrade-spec.schema.json is stale: run python -m istio_upgrade.models.schema"
    )
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"cluster", "target"}


@pytest.mark.parametrize(
    ("doc", "field", "hint"),
    [
        ({"cluster": {"name": "prod"}, "revision": "Bad_Rev"}, "revision", "DNS-1123"),
        ({"cluster": {"name": "prod"}, "revision": "1-30-3", "force": True}, "force", "extra"),
        ({"cluster": {"name": "Prod"}, "revision": "1-30-3"}, "cluster.name", "DNS-1123"),
    ],
)
def test_removal_spec_errors_name_the_field(doc: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(ValidationError) as info:
        RemoveRevisionSpec.model_validate(doc)
    error = info.value.errors()[0]
    assert ".".join(str(part) for part in error["loc"]) == field
    assert hint in error["msg"] or hint in error["type"]


def test_removal_workflow_id() -> None:
    spec = RemoveRevisionSpec.model_validate({"cluster": {"name": "prod"}, "revision": "1-30-3"})
    assert removal_workflow_id(spec) == "istio-remove-revision.prod.1-30-3"
    dry = spec.model_copy(update={"dry_run": True})
    assert removal_workflow_id(dry) == "istio-remove-revision.prod.1-30-3.dry-run"


def test_removal_of_the_revisionless_install_is_named_default() -> None:
    spec = RemoveRevisionSpec.model_validate({"cluster": {"name": "prod"}, "revision": "default"})
    assert spec.revision == "default"
