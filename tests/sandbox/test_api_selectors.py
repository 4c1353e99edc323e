"""Label and field selector parsing and matching (pure)."""

from __future__ import annotations

import pytest

from istio_sandbox.api.selectors import (
    SelectorError,
    match_label_selector,
    parse_field_selector,
    parse_selector,
)

_ALL_OPERATORS = "a=b,a==b,c!=d,e in (x,y),f notin (z),g,!h"


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("e in (x,y)", {"e": "y"}, True),
        ("e in (x,y)", {}, False),
        ("f notin (z)", {}, True),
        ("f notin (z)", {"f": "z"}, False),
        ("g", {"g": ""}, True),
        ("g", {}, False),
        ("!h", {"h": "1"}, False),
        ("!h", {}, True),
        (_ALL_OPERATORS, {"a": "b", "e": "x", "g": "1"}, True),
        (_ALL_OPERATORS, {"a": "b", "e": "x", "g": "1", "h": ""}, False),
        ("istio.io/rev=1-31-0", {"istio.io/rev": "1-31-0"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("", {"any": "thing"}, True),
        ("  a = b ", {"a": "b"}, True),
    ],
)
def test_label_selector_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a in x", "expected: '('"),
        ("a in ()", "values set can't be empty"),
        ("a,", "expected: identifier"),
        ("a!b", "expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b=c", "expected: ','"),
        ("a=-x", 'Invalid value: "-x"'),
        ("bad key=x", "expected"),
        ("n>x", "must be an integer"),
    ],
)
def test_label_selector_errors_say_where(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement") as info:
        parse_selector(text)
    assert fragment in str(info.value)


def test_selector_round_trips_to_text() -> None:
    text = "a=b,c!=d,e in (x,y),f notin (z),g,!h"
    assert str(parse_selector(text)) == text
    assert str(parse_selector(str(parse_selector(text)))) == text


def test_structured_label_selector_like_istio_revision_webhook() -> None:
    selector = {
        "matchExpressions": [
            {"key": "istio-injection", "operator": "DoesNotExist"},
            {"key": "istio.io/rev", "operator": "In", "values": ["1-31-0"]},
        ]
    }
    assert match_label_selector(selector, {"istio.io/rev": "1-31-0"})
    assert not match_label_selector(selector, {"istio.io/rev": "1-30-3"})
    assert not match_label_selector(
        selector, {"istio.io/rev": "1-31-0", "istio-injection": "enabled"}
    )
    assert match_label_selector({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"})
    assert not match_label_selector({"matchLabels": {"app": "web"}}, None)


def test_empty_or_missing_label_selector_matches_everything() -> None:
    assert match_label_selector(None, {"a": "b"})
    assert match_label_selector({}, {})


@pytest.mark.parametrize(
    "expr",
    [
        {"key": "a", "operator": "Gt", "values": ["1"]},
        {"key": "a", "operator": "In", "values": []},
        {"key": "a", "operator": "Exists", "values": ["x"]},
    ],
)
def test_malformed_structured_selector_is_an_error(expr: dict[str, object]) -> None:
    with pytest.raises(SelectorError):
        match_label_selector({"matchExpressions": [expr]}, {"a": "1"})


def test_field_selector_supported_fields() -> None:
    sel = parse_field_selector("status.phase=Running,metadata.name!=b", "pods")
    assert sel.matches({"metadata": {"name": "a"}, "status": {"phase": "Running"}})
    assert not sel.matches({"metadata": {"name": "b"}, "status": {"phase": "Running"}})
    assert not sel.matches({"metadata": {"name": "a"}, "status": {"phase": "Pending"}})
    assert sel.value_of("status.phase") == "Running"
    assert parse_field_selector("spec.nodeName==n1", "pods").matches({"spec": {"nodeName": "n1"}})


def test_field_selector_rejects_unsupported_fields() -> None:
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.replicas"):
        parse_field_selector("spec.replicas=1", "deployments")
    with pytest.raises(SelectorError, match=r"field label not supported: status\.phase"):
        parse_field_selector("status.phase=Running", "configmaps")
