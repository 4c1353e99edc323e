"""Read specs from YAML or JSON; report validation errors as ``field.path: message`` lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it: an inline bundle or a long list of
namespaces parses in milliseconds instead of a second."""


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
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = (item.get("ctx") or {}).get("did_you_mean")
            message = "unknown field; remove it or check its spelling" + (
                f" (did you mean {close!r}?)" if close else ""
            )
            message += " (see `istio-upgrade schema`)"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path or '(root)'}: {message}")
    return lines


def _duplicate_keys(node: yaml.Node, path: str, seen: set[int]) -> Iterator[str]:
    """``path: …`` lines for mapping keys given twice (YAML keeps the last one silently)."""
    if id(node) in seen:  # aliases share nodes: visit each once (a "billion laughs" stays cheap)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            where = f"{path}.{name}" if path else name
            line = key.start_mark.line + 1
            if name in first:
                yield (
                    f"{where}: given twice (line {first[name]} and line {line}); YAML would keep "
                    "only the last one: remove one"
                )
            else:
                first[name] = line
            yield from _duplicate_keys(value, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{index}]", seen)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"key {twice[0]!r} is given twice in one object; remove one")
    return dict(pairs)


def parse_document(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON); a ``.json`` source is parsed strictly as JSON.

    Raises:
        SpecError: The text is empty, not valid YAML/JSON, holds several documents or a key
            given twice.
    """
    if not text.strip():
        raise SpecError(source, ["(file): the file is empty; write the spec's fields in it"])
    try:
        if source.endswith(".json"):
            return json.loads(text, object_pairs_hook=_json_object)
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
        documents = list(yaml.load_all(text, Loader=_LOADER))  # _LOADER is a safe loader
    except (yaml.YAMLError, ValueError) as error:
        raise SpecError(
            source, [f"(file): not valid {_kind(source)}: {_one_line(error)}"]
        ) from error
    duplicates = [line for node in nodes for line in _duplicate_keys(node, "", set())]
    if duplicates:
        raise SpecError(source, duplicates)
    if len(documents) != 1:
        raise SpecError(source, [f"(file): expected one YAML document, found {len(documents)}"])
    return documents[0]


def _one_line(error: Exception) -> str:
    """A YAML or JSON syntax error on one line: what is wrong, and where."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        context = f" ({error.context})" if error.context else ""
        return f"{error.problem} at {where}{context}"
    return " ".join(str(error).split())


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
            text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(source, [f"(file): cannot read: {error.strerror or error}"]) from error
    except UnicodeDecodeError as error:
        raise SpecError(
            source,
            [
                f"(file): not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                f"{error.start}); save the spec as UTF-8"
            ],
        ) from error
    data = parse_document(text, source)
    if not isinstance(data, dict):
        raise SpecError(
            source, [f"(root): expected a mapping of fields, got {type(data).__name__}"]
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SpecError(source, error_lines(error)) from error
