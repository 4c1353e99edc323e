"""docs/troubleshooting.md has a section for every error type the code raises.

The types are collected from the source, so a new ``ApplicationError`` type (or precheck
finding code) fails this test until it is documented.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "istio_upgrade"
DOC = ROOT / "docs" / "troubleshooting.md"

RAISERS = {"ApplicationError", "UpgradeFailure"}
"""Calls whose ``type=`` keyword (or, for ``UpgradeFailure``, second argument) is an error type."""


def _strings(node: ast.AST) -> list[str]:
    """String constants an expression may evaluate to (``a or "B"``, ``"A" if c else "B"``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.BoolOp):
        return [s for value in node.values for s in _strings(value)]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def _assigned(tree: ast.AST, name: str) -> list[str]:
    """Constants assigned to ``name`` anywhere in a module (also in tuple assignments)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == name:
                found += _strings(node.value)
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for element, value in zip(target.elts, node.value.elts, strict=False):
                    if isinstance(element, ast.Name) and element.id == name:
                        found += _strings(value)
    return found


def error_types(package: Path = PACKAGE) -> dict[str, str]:
    """Every ApplicationError type raised in ``package``, with a file raising it."""
    types: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in RAISERS:
                continue
            exprs = [k.value for k in node.keywords if k.arg in {"type", "kind"}]
            if name == "UpgradeFailure" and len(node.args) >= 2:
                exprs.append(node.args[1])
            for expr in exprs:
                values = _strings(expr)
                if isinstance(expr, ast.Name):
                    values += _assigned(tree, expr.id)
                for value in values:
                    if value:
                        types.setdefault(value, str(path.relative_to(package.parent)))
    return types


def finding_codes() -> dict[str, str]:
    """Every precheck finding code (``code="…"``) in ``istio_upgrade/``."""
    codes: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for code in re.findall(r'\bcode="([A-Z][A-Z_]+)"', path.read_text()):
            codes.setdefault(code, str(path.relative_to(ROOT)))
    return codes


def headings() -> set[str]:
    return {m.strip("` ") for m in re.findall(r"^###? +(.+)$", DOC.read_text(), flags=re.M)}


def test_the_collector_finds_the_types_it_must() -> None:
    """The collector sees literal, variable and ``or``-defaulted types (it can fail)."""
    found = error_types()
    for kind in ("InvalidSpec", "GateFailed", "ClusterBusy", "StepFailed", "KubeconfigError"):
        assert kind in found, kind
    # ``outcome, kind = "FAILED", "FailureBudgetExceeded"`` in the fleet workflow
    assert "FailureBudgetExceeded" in found
    assert "PERMISSION_MISSING" in finding_codes()


def test_a_new_error_type_is_found(tmp_path: Path) -> None:
    """A type added by a change shows up, whichever way it is raised."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "new.py").write_text(
        "def f(error):\n"
        "    raise ApplicationError('x', type='BrandNewError', non_retryable=True)\n"
        "def g(st):\n"
        "    kind = 'AnotherNewError'\n"
        "    return ApplicationError('y', type=kind)\n"
        "def h():\n"
        "    raise UpgradeFailure('z', 'ThirdNewError')\n"
    )
    found = error_types(package)
    assert {"BrandNewError", "AnotherNewError", "ThirdNewError"} <= set(found)
    assert not {"BrandNewError", "AnotherNewError", "ThirdNewError"} & headings()


def test_every_error_type_has_a_section() -> None:
    documented = headings()
    missing = {k: where for k, where in error_types().items() if k not in documented}
    assert not missing, (
        f"docs/troubleshooting.md has no section (### `Type`) for {missing}: add one with a "
        "message example, the cause and the fix"
    )


def test_every_precheck_finding_code_is_explained() -> None:
    text = DOC.read_text()
    missing = {c: where for c, where in finding_codes().items() if f"`{c}`" not in text}
    assert not missing, f"docs/troubleshooting.md does not explain the finding codes {missing}"


def test_every_section_has_message_cause_and_fix() -> None:
    sections = re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        for part in ("**Message**", "**Cause**", "**Fix**"):
            assert part in section, f"{title}: no {part}"
