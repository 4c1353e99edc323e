"""Read specs from YAML or JSON; report validation errors as ``field.path: message`` lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class SpecError(ValueError):
    """A spec file that cannot be used; ``lines`` holds one ``field.path: message`` per problem."""

    def __init__(self, source: str, lines: list[str]) -> None:
        self.source = source
        self.lines = lines
        super().__init__(f"{source}: " + "; ".join(lines))


def error_lines(error: ValidationError) -> list[str]:
    """One ``field.path: message`` line per pydantic error, list indexes as ``[i]``."""
    lines = []
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling (see `istio-upgrade schema`)"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path or '(root)'}: {message}")
    return lines


def parse_document(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON); a ``.json`` source is parsed strictly as JSON.

    Raises:
        SpecError: The text is not valid YAML/JSON or holds several documents.
    """
    try:
        if source.endswith(".json"):
            return json.loads(text)
        documents = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise SpecError(source, [f"(file): not valid {_kind(source)}: {error}"]) from error
    if len(documents) != 1:
        raise SpecError(source, [f"(file): expected one YAML document, found {len(documents)}"])
    return documents[0]


def _kind(source: str) -> str:
    return "JSON" if source.endswith(".json") else "YAML"


def load_model(path: str | Path, model: type[ModelT]) -> ModelT:
    """Load ``path`` (``-`` for stdin) into ``model``.

    Raises:
        SpecError: Unreadable file, bad syntax, or validation errors.
    """
    source = str(path)
    try:
        if source == "-":
            import sys

            text = sys.stdin.read()
        else:
            text = Path(path).read_text()
    except OSError as error:
        raise SpecError(source, [f"(file): cannot read: {error.strerror or error}"]) from error
    data = parse_document(text, source)
    if not isinstance(data, dict):
        raise SpecError(
            source, [f"(root): expected a mapping of fields, got {type(data).__name__}"]
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SpecError(source, error_lines(error)) from error
