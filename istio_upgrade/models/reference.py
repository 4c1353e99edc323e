"""Generate the field reference of the specs (``docs/reference/*.md``) from the pydantic models.

Run ``python -m istio_upgrade.models.reference`` after changing a model: it rewrites
``docs/reference/upgrade-spec.md``, ``slo.md`` and ``fleet-spec.md`` and the two published
JSON schemas (``docs/examples/*.schema.json``). ``tests/unit/test_docs_reference.py`` fails
while a checked-in file differs from what this module renders, so a model change cannot land
without its reference.

Every field is listed with its type, default, constraints and description; the description is
the field's attribute docstring (``use_attribute_docstrings``) or ``Field(description=...)``.
The output depends only on the models and the checked-in examples: no dates, no addresses.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from istio_upgrade.models import schema as upgrade_schema
from istio_upgrade.models.fleet import SCHEMA_PATH as FLEET_SCHEMA_PATH
from istio_upgrade.models.fleet import FleetSpec
from istio_upgrade.models.fleet import render_schema as render_fleet_schema
from istio_upgrade.models.slo import SLOSpec
from istio_upgrade.models.spec import UpgradeSpec

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT / "docs" / "reference"
EXAMPLES_DIR = ROOT / "docs" / "examples"
COMMAND = "python -m istio_upgrade.models.reference"

MAX_INLINE_DEFAULT = 60
"""Defaults longer than this (as JSON) are shown below the table instead of in it."""


@dataclass(frozen=True)
class Document:
    """One reference page: its root model, its title and the example it shows."""

    filename: str
    title: str
    root: type[BaseModel]
    intro: str
    example: str
    """A file of ``docs/examples/`` shown at the end of the page."""
    root_path: str = ""
    """The root model's JSON path inside an ``UpgradeSpec`` (empty: a document of its own)."""


DOCUMENTS = (
    # SLO models first: the upgrade spec's gate links to them instead of repeating them.
    Document(
        "slo.md",
        "SLO reference",
        SLOSpec,
        "An SLO of the upgrade gate (`gate.slos[]` of an `UpgradeSpec`), as it also appears in "
        "an SLO file (`slos:`) for `istio-upgrade slo rules` and `istio-upgrade slo check`. "
        "How the gate uses it: [slo-gate.md](../slo-gate.md).",
        "slo-mesh.yaml",
        root_path="gate.slos[]",
    ),
    Document(
        "upgrade-spec.md",
        "UpgradeSpec reference",
        UpgradeSpec,
        "`UpgradeSpec` is the single argument of the `IstioCanaryUpgrade` workflow and the "
        "file `istio-upgrade plan|start -f` reads (YAML or JSON). Unknown fields are refused. "
        "Its JSON schema: [upgrade-spec.schema.json](../examples/upgrade-spec.schema.json).",
        "upgrade-minimal.yaml",
    ),
    Document(
        "fleet-spec.md",
        "FleetSpec reference",
        FleetSpec,
        "`FleetSpec` is the single argument of the `FleetRollout` workflow and the file "
        "`istio-upgrade fleet start -f` reads; how a fleet runs: [fleet.md](../fleet.md). "
        "Its JSON schema: [fleet-spec.schema.json](../examples/fleet-spec.schema.json).",
        "fleet-example.yaml",
    ),
)


@dataclass
class _Placement:
    """Where each model is documented (the first page reaching it) and its first JSON path."""

    page: dict[type[BaseModel], str] = field(default_factory=dict)
    path: dict[type[BaseModel], str] = field(default_factory=dict)
    order: dict[str, list[type[BaseModel]]] = field(default_factory=dict)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation refers to, in the order they appear."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(arg) is list for arg in typing.get_args(annotation)
    )


def _place(documents: tuple[Document, ...] = DOCUMENTS) -> _Placement:
    placement = _Placement()
    for doc in documents:
        placement.order[doc.filename] = []

        def visit(model: type[BaseModel], path: str, page: str = doc.filename) -> None:
            if model in placement.page:
                return
            placement.page[model] = page
            placement.path[model] = path
            placement.order[page].append(model)
            for name, info in model.model_fields.items():
                sub = f"{path}.{name}" if path else name
                if _is_list(info.annotation):
                    sub += "[]"
                for child in _models_in(info.annotation):
                    visit(child, sub)

        visit(doc.root, doc.root_path)
    return placement


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _link(model: type[BaseModel], page: str, placement: _Placement) -> str:
    home = placement.page[model]
    target = f"#{_anchor(model)}" if home == page else f"{home}#{_anchor(model)}"
    return f"[{model.__name__}]({target})"


def _type(annotation: Any, page: str, placement: _Placement) -> str:
    """A reader's spelling of a type: ``list[str]``, ``"a" | "b"``, links to nested models."""
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _link(annotation, page, placement)
    if annotation is Any:
        return "any"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(arg) for arg in args)
    if origin is typing.Annotated:
        inner = _type(args[0], page, placement)
        bounds = _constraints([m for a in args[1:] for m in _metadata_of(a)], args[0])
        return f"{inner} ({bounds})" if bounds else inner
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(arg, page, placement) for arg in args)
    if origin is list:
        return f"list[{_type(args[0], page, placement)}]"
    if origin is dict:
        return f"map[{_type(args[0], page, placement)}, {_type(args[1], page, placement)}]"
    if isinstance(annotation, type):
        return {"datetime": "datetime (RFC 3339)"}.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _metadata_of(item: Any) -> list[Any]:
    if isinstance(item, FieldInfo):
        return list(item.metadata)
    return [item]


_BOUNDS = (
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Ge, "ge", "≥ {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.Le, "le", "≤ {}"),
    (annotated_types.MinLen, "min_length", "length ≥ {} items"),
    (annotated_types.MaxLen, "max_length", "length ≤ {} items"),
    (annotated_types.MultipleOf, "multiple_of", "multiple of {}"),
)


def _constraints(metadata: list[Any], annotation: Any) -> str:
    """Bounds and patterns of a field; lengths count characters of strings, items otherwise."""
    unit = "characters" if annotation is str else "items"
    parts = []
    for item in metadata:
        for kind, attribute, text in _BOUNDS:
            if isinstance(item, kind):
                parts.append(text.format(_number(getattr(item, attribute))).replace("items", unit))
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:,}" if isinstance(value, int) and value >= 10_000 else str(value)


def _default_value(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


def _default(info: FieldInfo) -> tuple[str, Any]:
    """The table cell for a default, and the value to show below the table when it is long."""
    if info.is_required():
        return "**required**", None
    value = _default_value(info)
    if value is PydanticUndefined:
        return "**required**", None
    if isinstance(value, BaseModel):
        return "its defaults", None
    text = json.dumps(_json(value), sort_keys=True)
    if len(text) > MAX_INLINE_DEFAULT:
        return "below", _json(value)
    return f"`{text}`", None


def _text(docstring: str | None) -> str:
    """A docstring as one Markdown table cell: reST literals as code, one line, pipes escaped."""
    if not docstring:
        return ""
    text = " ".join(line.strip() for line in docstring.strip().splitlines())
    text = re.sub(r"\s+", " ", text).replace("``", "`")
    return text.replace("|", "\\|")


def _paragraphs(docstring: str | None) -> str:
    """A class docstring as Markdown paragraphs (reST literals as code)."""
    if not docstring:
        return ""
    lines = [line.strip() for line in docstring.strip().splitlines()]
    paragraphs = " ".join(line if line else "\n\n" for line in lines)
    return re.sub(r" ?\n\n ?", "\n\n", paragraphs).replace("``", "`")


def _model_section(model: type[BaseModel], page: str, placement: _Placement) -> list[str]:
    path = placement.path[model]
    lines = [f"## {model.__name__}", ""]
    lines.append(f"At `{path}`." if path else "The document's top level.")
    lines.append("")
    about = _paragraphs(model.__doc__)
    if about:
        lines += [about, ""]
    lines += [
        "| field | type | default | constraints | description |",
        "|---|---|---|---|---|",
    ]
    long_defaults: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        cell, long = _default(info)
        if long is not None:
            long_defaults.append((name, long))
        row = [
            f"`{name}`",
            _type(info.annotation, page, placement),
            cell,
            _constraints(list(info.metadata), info.annotation),
            _text(info.description),
        ]
        if info.discriminator:
            row[4] = (row[4] + f" One of the types, chosen by `{info.discriminator}`.").strip()
        lines.append("| " + " | ".join(row) + " |")
    for name, value in long_defaults:
        lines += ["", f"Default of `{name}`:", "", "```json", json.dumps(value, indent=2), "```"]
    lines.append("")
    return lines


def render_document(doc: Document, placement: _Placement | None = None) -> str:
    """The exact text of one reference page (``doc`` replacing its namesake in ``DOCUMENTS``)."""
    if placement is None:
        placement = _place(tuple(doc if d.filename == doc.filename else d for d in DOCUMENTS))
    lines = [
        f"# {doc.title}",
        "",
        f"<!-- Generated by `{COMMAND}` from the pydantic models; do not edit. -->",
        "",
        doc.intro,
        "",
        "Models on this page: "
        + ", ".join(_link(m, doc.filename, placement) for m in placement.order[doc.filename])
        + ".",
        "",
    ]
    for model in placement.order[doc.filename]:
        lines += _model_section(model, doc.filename, placement)
    example = (EXAMPLES_DIR / doc.example).read_text()
    lines += [
        "## Example",
        "",
        f"[`docs/examples/{doc.example}`](../examples/{doc.example}):",
        "",
        "```yaml",
        example.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def render_all() -> dict[Path, str]:
    """Every generated file (reference pages and JSON schemas) and its exact text."""
    placement = _place()
    files = {REFERENCE_DIR / doc.filename: render_document(doc, placement) for doc in DOCUMENTS}
    files[upgrade_schema.SCHEMA_PATH] = upgrade_schema.render()
    files[FLEET_SCHEMA_PATH] = render_fleet_schema()
    return files


def stale() -> list[Path]:
    """Generated files whose checked-in text differs from what the models render."""
    return [
        path for path, text in render_all().items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Write every generated file; ``--check`` only reports stale ones (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        outdated = stale()
        for path in outdated:
            print(f"{path.relative_to(ROOT)} is stale: run `{COMMAND}` and commit")
        return 1 if outdated else 0
    for path, text in render_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
