"""Label and field selectors with Kubernetes semantics (pure; no I/O).

``parse_selector`` reads the ``labelSelector`` query syntax (``a=b,c!=d,e in (x,y),!f``);
``selector_from_label_selector`` and ``match_label_selector`` evaluate the structured
``LabelSelector`` (``matchLabels`` + ``matchExpressions``) that Deployments, webhooks and PDBs
carry. ``parse_field_selector`` handles the few ``fieldSelector`` fields the API supports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from istio_sandbox.api.validation import label_value_errors, qualified_name_errors

Operator = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]


class SelectorError(ValueError):
    """A selector that cannot be parsed or evaluated; the message says what and where."""


@dataclass(frozen=True)
class Requirement:
    """One term of a selector, e.g. ``env in (prod,staging)``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term, with the API server's absent-key rules."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            # An absent key satisfies a negative term, as in Kubernetes.
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if not present:
            return False
        try:
            have, want = int(str(value)), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.operator == "gt" else have < want

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        if self.operator == "gt":
            return f"{self.key}>{self.values[0]}"
        if self.operator == "lt":
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = False
    """True for the selector of a nil ``LabelSelector`` in contexts where nil selects nothing."""

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with these labels is selected."""
        if self.match_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects every object."""
        return not self.requirements and not self.match_nothing

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# -- labelSelector query syntax ------------------------------------------------------------

_SPECIAL = set("!=,()<> \t\n")
_Token = tuple[str, str, int]
"""(kind, text, position) where kind is one of: id, op, (, ), ",", end."""


def _tokens(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n":
            i += 1
        elif text.startswith(("==", "!="), i):
            yield ("op", text[i : i + 2], i)
            i += 2
        elif c in "=!<>":
            yield ("op", c, i)
            i += 1
        elif c in "(),":
            yield (c, c, i)
            i += 1
        else:
            start = i
            while i < n and text[i] not in _SPECIAL:
                i += 1
            word = text[start:i]
            yield ("op" if word in ("in", "notin") else "id", word, start)
    yield ("end", "", n)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = list(_tokens(text))
        self.pos = 0

    def peek(self) -> _Token:
        return self.toks[self.pos]

    def take(self) -> _Token:
        tok = self.toks[self.pos]
        if tok[0] != "end":
            self.pos += 1
        return tok

    def fail(self, tok: _Token, expected: str) -> SelectorError:
        found = tok[1] if tok[0] != "end" else ""
        return SelectorError(
            f"unable to parse requirement: found '{found}' at position {tok[2]} of "
            f"{self.text!r}, expected: {expected}"
        )

    def parse(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek()[0] == "end":
            return Selector()
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok[0] == "end":
                break
            if tok[0] != ",":
                raise self.fail(tok, "','")
        return Selector(tuple(reqs))

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok[0] == "op" and tok[1] == "!":
            key_tok = self.take()
            if key_tok[0] != "id":
                raise self.fail(key_tok, "identifier after '!'")
            _check_key(key_tok[1])
            return Requirement(key_tok[1], "!")
        if tok[0] != "id":
            raise self.fail(tok, "identifier")
        key = tok[1]
        _check_key(key)
        op_tok = self.peek()
        if op_tok[0] in (",", "end"):
            return Requirement(key, "exists")
        op_tok = self.take()
        if op_tok[0] != "op" or op_tok[1] == "!":
            raise self.fail(op_tok, "in, notin, =, ==, !=, gt, lt")
        op = op_tok[1]
        if op in ("in", "notin"):
            return Requirement(key, "in" if op == "in" else "notin", self.value_set(key))
        value_tok = self.peek()
        if value_tok[0] in (",", "end"):
            value = ""
        else:
            value_tok = self.take()
            if value_tok[0] != "id":
                raise self.fail(value_tok, "a value")
            value = value_tok[1]
        if op in ("<", ">"):
            try:
                int(value)
            except ValueError:
                raise SelectorError(
                    f"unable to parse requirement: for 'gt', 'lt' operators, the value of "
                    f"{key!r} must be an integer, got {value!r}"
                ) from None
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        _check_value(key, value)
        return Requirement(key, "!=" if op == "!=" else "=", (value,))

    def value_set(self, key: str) -> tuple[str, ...]:
        tok = self.take()
        if tok[0] != "(":
            raise self.fail(tok, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.take()
            if tok[0] == ")":
                if expect_value and values:
                    values.append("")
                break
            if tok[0] == ",":
                if expect_value:
                    values.append("")
                expect_value = True
            elif tok[0] in ("id", "op") and expect_value and tok[1] not in ("!", "=", "=="):
                values.append(tok[1])
                expect_value = False
            else:
                raise self.fail(tok, "',' or ')'" if not expect_value else "a value or ')'")
        if not values:
            raise SelectorError(
                f"unable to parse requirement: values for {key!r}: Required value: for 'in', "
                "'notin' operators, values set can't be empty"
            )
        for v in values:
            _check_value(key, v)
        return tuple(sorted(set(values)))


def _check_key(key: str) -> None:
    errs = qualified_name_errors(key)
    if errs:
        raise SelectorError(f'unable to parse requirement: key: Invalid value: "{key}": {errs[0]}')


def _check_value(key: str, value: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise SelectorError(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": {errs[0]}'
        )


def parse_selector(text: str | None) -> Selector:
    """Parse a ``labelSelector`` query string; ``None`` or blank selects everything.

    Raises:
        SelectorError: the text is not a valid selector; the message names the position.
    """
    if text is None or not text.strip():
        return Selector()
    return _Parser(text).parse()


# -- structured LabelSelector ----------------------------------------------------------------

_EXPR_OPERATORS: dict[str, Operator] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
}


def selector_from_label_selector(selector: Mapping[str, Any] | None) -> Selector:
    """Turn a ``LabelSelector`` dict into a :class:`Selector`.

    ``None`` and ``{}`` select everything, which is what the API server defaults an absent
    webhook ``namespaceSelector``/``objectSelector`` to.

    Raises:
        SelectorError: an unknown operator or a values list that does not fit the operator.
    """
    if not selector:
        return Selector()
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(str(key), "=", (str(value),)))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        key = str(expr.get("key", ""))
        op_name = str(expr.get("operator", ""))
        values = tuple(str(v) for v in expr.get("values") or ())
        op = _EXPR_OPERATORS.get(op_name)
        path = f"matchExpressions[{i}]"
        if op is None:
            raise SelectorError(
                f"{path}.operator: Unsupported value: {op_name!r}: supported values: "
                '"In", "NotIn", "Exists", "DoesNotExist"'
            )
        if op in ("in", "notin") and not values:
            raise SelectorError(
                f"{path}.values: Required value: must be specified when `operator` is 'In' "
                "or 'NotIn'"
            )
        if op in ("exists", "!") and values:
            raise SelectorError(
                f"{path}.values: Forbidden: may not be specified when `operator` is 'Exists' or "
                "'DoesNotExist'"
            )
        reqs.append(Requirement(key, op, values))
    return Selector(tuple(reqs))


def match_label_selector(
    selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None
) -> bool:
    """Whether ``labels`` match a ``LabelSelector`` dict (``None``/``{}`` match everything).

    Raises:
        SelectorError: the selector is malformed (unknown operator, missing values).
    """
    return selector_from_label_selector(selector).matches(labels)


# -- fieldSelector ---------------------------------------------------------------------------

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_FIELDS_BY_RESOURCE: dict[str, tuple[str, ...]] = {
    "pods": (
        "status.phase",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
    ),
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "type",
        "source",
        "reportingComponent",
    ),
    "namespaces": ("status.phase",),
    "secrets": ("type",),
    "jobs": ("status.successful",),
    "replicasets": ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    """``path=value`` or ``path!=value`` on one supported field."""

    path: str
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        have = _field_value(obj, self.path)
        return (have != self.value) if self.negate else (have == self.value)


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements; empty selects everything."""

    requirements: tuple[FieldRequirement, ...] = field(default=())

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def value_of(self, path: str) -> str | None:
        """The value an ``=`` requirement pins ``path`` to, so a lookup can skip a scan."""
        for r in self.requirements:
            if r.path == path and not r.negate:
                return r.value
        return None


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    if path == "source":
        return str(((obj.get("source") or {}).get("component")) or "")
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    return str(cur)


def supported_fields(plural: str) -> tuple[str, ...]:
    """Field paths a ``fieldSelector`` may use for resources ``plural``."""
    return _COMMON_FIELDS + _FIELDS_BY_RESOURCE.get(plural, ())


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    """Parse a ``fieldSelector`` for resources ``plural``.

    Raises:
        SelectorError: bad syntax, or a field the API does not index ("field label not supported").
    """
    if text is None or not text.strip():
        return FieldSelector()
    allowed = supported_fields(plural)
    reqs: list[FieldRequirement] = []
    for term in text.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            path, value = term.split("!=", 1)
            negate = True
        elif "==" in term:
            path, value = term.split("==", 1)
            negate = False
        elif "=" in term:
            path, value = term.split("=", 1)
            negate = False
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        path = path.strip()
        if path not in allowed:
            raise SelectorError(f"field label not supported: {path}")
        reqs.append(FieldRequirement(path, negate, value.strip()))
    return FieldSelector(tuple(reqs))
