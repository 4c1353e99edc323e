"""Spec files: YAML or JSON in, one ``field.path: message`` line per problem out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from istio_upgrade.cli.specfile import SpecError, load_model


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=1)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cluster: str
    batches: list[Batch] = Field(default_factory=list)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_json_load_to_the_same_model(tmp_path: Path) -> None:
    yaml_spec = load_model(write(tmp_path, "s.yaml", "cluster: prod\nbatches:\n- size: 2\n"), Spec)
    json_spec = load_model(
        write(tmp_path, "s.json", '{"cluster": "prod", "batches": [{"size": 2}]}'), Spec
    )
    assert yaml_spec == json_spec == Spec(cluster="prod", batches=[Batch(size=2)])


def test_errors_name_nested_fields_with_list_indexes(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "clustr: prod\nbatches:\n- size: 0\n")
    with pytest.raises(SpecError) as info:
        load_model(path, Spec)
    assert info.value.lines == [
        "cluster: required field is missing",
        "batches[0].size: Input should be greater than or equal to 1",
        "clustr: unknown field; remove it or check its spelling (see `istio-upgrade schema`)",
    ]
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("s.yaml", "cluster: [unclosed\n", "(file): not valid YAML"),
        ("s.json", "{'cluster': 1}", "(file): not valid JSON"),
        ("s.yaml", "- cluster: prod\n", "(root): expected a mapping of fields, got list"),
        ("s.yaml", "cluster: a\n---\ncluster: b\n", "(file): expected one YAML document, found 2"),
    ],
)
def test_syntax_problems_are_single_clear_lines(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_model(write(tmp_path, name, text), Spec)
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith(expected)


def test_missing_file_says_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_model(tmp_path / "absent.yaml", Spec)
    assert info.value.lines == ["(file): cannot read: No such file or directory"]
