"""The spec reference in docs/reference/ is generated from the models and must be current."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import Field, create_model

from istio_upgrade.models import reference
from istio_upgrade.models.fleet import FleetSpec
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.models.spec import MigrationSpec, UpgradeSpec


def _walk(root: type) -> set[type]:
    seen: set[type] = set()
    stack = [root]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for info in model.model_fields.values():
            stack.extend(reference._models_in(info.annotation))
    return seen


@pytest.mark.parametrize("path", sorted(reference.render_all()), ids=lambda p: p.name)
def test_generated_file_is_current(path: object) -> None:
    expected = reference.render_all()[path]  # type: ignore[index]
    assert path.exists(), f"{path} is missing: run `{reference.COMMAND}` and commit"  # type: ignore[attr-defined]
    assert path.read_text() == expected, (  # type: ignore[attr-defined]
        f"{path} is stale: run `{reference.COMMAND}` and commit"
    )


def test_the_check_command_reports_nothing_stale(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--check"]) == 0, capsys.readouterr().out


def test_every_field_of_every_model_is_documented_with_a_description() -> None:
    pages = {doc.filename: reference.render_document(doc) for doc in reference.DOCUMENTS}
    text = "\n".join(pages.values())
    for root in (UpgradeSpec, SLOSpec, FleetSpec):
        for model in _walk(root):
            assert f"## {model.__name__}\n" in text, model
            for name, info in model.model_fields.items():
                assert f"| `{name}` |" in text, f"{model.__name__}.{name}"
                assert info.description, (
                    f"{model.__name__}.{name} has no description: give it an attribute "
                    "docstring (the reference and the JSON schema show it)"
                )


def test_a_model_change_makes_the_checked_in_reference_stale() -> None:
    """What CI sees when a field is added without regenerating: the rendered page differs."""
    changed_migration = create_model(
        "MigrationSpec",
        __base__=MigrationSpec,
        drain_seconds=(float, Field(5.0, ge=0, description="A field added by a change.")),
    )
    changed_spec = create_model(
        "UpgradeSpec",
        __base__=UpgradeSpec,
        migration=(changed_migration, Field(default_factory=changed_migration)),
    )
    doc = next(d for d in reference.DOCUMENTS if d.root is UpgradeSpec)
    checked_in = (reference.REFERENCE_DIR / doc.filename).read_text()
    rendered = reference.render_document(replace(doc, root=changed_spec))
    assert rendered != checked_in
    assert "| `drain_seconds` | float | `5.0` | ≥ 0 | A field added by a change. |" in rendered


def test_rendering_is_deterministic() -> None:
    assert reference.render_all() == reference.render_all()


def test_types_constraints_and_enum_values_are_rendered() -> None:
    page = (reference.REFERENCE_DIR / "upgrade-spec.md").read_text()
    assert (
        '| `on_inconclusive` | "wait_for_approval" \\| "rollback" \\| "proceed" '
        '| `"wait_for_approval"` |'
    ) in page
    assert "| `first_batch_size` | int | `1` | ≥ 1, ≤ 5000 |" in page
    assert "[SLOSpec](slo.md#slospec)" in page
    fleet = (reference.REFERENCE_DIR / "fleet-spec.md").read_text()
    assert "[MaintenanceWindows](upgrade-spec.md#maintenancewindows)" in fleet
