"""Kubernetes label selectors as strings (``app=web,tier in (a,b),!legacy``), parsed and matched.

Pure code: the workflow selects namespaces from the discovered inventory without asking the
API server again, so the selection is part of the recorded, replayable decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

# Kubernetes' label syntax (apimachinery ``validation.IsQualifiedName`` / ``IsValidLabelValue``):
# a name of at most 63 characters with an optional DNS-subdomain prefix of at most 253.
# Matched with ``fullmatch``: ``$`` would also accept a trailing newline.
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_SET = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)\s*$")
MAX_NAME = 63
MAX_PREFIX = 253

_KEY_RULE = (
    "a label key is an optional DNS subdomain and '/', then at most 63 letters, digits, '-', "
    "'_' or '.', starting and ending with a letter or digit"
)
_VALUE_RULE = (
    "a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit, and is written without quotes"
)


@dataclass(frozen=True)
class Requirement:
    """One requirement of a selector."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (Kubernetes semantics)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present


def _split(text: str) -> list[str]:
    """Split on commas that are not inside ``( … )``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _valid_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > MAX_PREFIX or not _PREFIX.fullmatch(prefix)):
        return False
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None


def _valid_value(value: str) -> bool:
    return value == "" or (len(value) <= MAX_NAME and _NAME.fullmatch(value) is not None)


def _check(key: str, values: tuple[str, ...], term: str) -> None:
    if not _valid_key(key):
        raise ValueError(f"{term!r}: {key!r} is not a valid label key ({_KEY_RULE})")
    for value in values:
        if not _valid_value(value):
            raise ValueError(f"{term!r}: {value!r} is not a valid label value ({_VALUE_RULE})")


def parse_selector(text: str) -> list[Requirement]:
    """Parse a label selector string as ``kubectl -l`` accepts it.

    Args:
        text: e.g. ``istio-injection=enabled,team in (a,b),!legacy``; empty selects everything.

    Returns:
        The requirements, all of which must hold.

    Raises:
        ValueError: The selector is malformed; the message names the offending term.
    """
    requirements: list[Requirement] = []
    for term in _split(text):
        set_match = _SET.match(term)
        if set_match:
            key, op = set_match.group(1), set_match.group(2)
            values = tuple(v.strip() for v in set_match.group(3).split(",") if v.strip())
            if not values:
                raise ValueError(f"{term!r}: a set needs at least one value")
            _check(key, values, term)
            requirements.append(Requirement(key, "in" if op == "in" else "notin", values))
            continue
        if term.startswith("!"):
            key = term[1:].strip()
            _check(key, (), term)
            requirements.append(Requirement(key, "!"))
            continue
        for token, operator in (("!=", "!="), ("==", "="), ("=", "=")):
            if token in term:
                key, value = (s.strip() for s in term.split(token, 1))
                _check(key, (value,), term)
                requirements.append(Requirement(key, operator, (value,)))  # type: ignore[arg-type]
                break
        else:
            _check(term, (), term)
            requirements.append(Requirement(term, "exists"))
    return requirements


def selector_matches(text: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement of the selector ``text``."""
    return all(r.matches(labels) for r in parse_selector(text))


def label_selector_matches(
    selector: Mapping[str, object] | None, labels: Mapping[str, str]
) -> bool:
    """Evaluate a structured ``LabelSelector`` (matchLabels + matchExpressions) like the API server.

    Args:
        selector: The selector object of a webhook; None or empty matches everything.
        labels: The labels of the namespace or object.
    """
    if not selector:
        return True
    match_labels = selector.get("matchLabels") or {}
    assert isinstance(match_labels, Mapping)
    for key, value in match_labels.items():
        if labels.get(str(key)) != value:
            return False
    expressions = selector.get("matchExpressions") or []
    assert isinstance(expressions, list)
    for expr in expressions:
        key = str(expr.get("key", ""))
        op = str(expr.get("operator", ""))
        values = tuple(str(v) for v in (expr.get("values") or []))
        mapped: Operator = {"In": "in", "NotIn": "notin", "Exists": "exists"}.get(op, "!")  # type: ignore[assignment]
        if op not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            return False
        if not Requirement(key, mapped, values).matches(labels):
            return False
    return True
