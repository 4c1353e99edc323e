"""The layer contracts of pyproject.toml hold, and fail when a forbidden import is added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contracts, where a test may add a bad import."""
    for package in ("istio_upgrade", "istio_sandbox"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(path: Path, line: str) -> None:
    text = path.read_text()
    # After the module docstring and `from __future__`, which must stay first.
    anchor = "from __future__ import annotations\n"
    assert anchor in text, path
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


def test_contracts_are_kept(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert verdict(result.stdout, "independent oracle") == "KEPT"


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "istio_sandbox/controllers/injector.py",
            "import istio_upgrade.istio.naming",
            "independent oracle",
        ),
        ("istio_upgrade/workflows/gate.py", "import kubernetes", "Workflows are deterministic"),
        (
            "istio_upgrade/workflows/gate.py",
            "import istio_upgrade.activities.discovery",
            "Workflows are deterministic",
        ),
        (
            "istio_upgrade/activities/lock.py",
            "import istio_upgrade.workflows.gate",
            "Activities never",
        ),
        ("istio_upgrade/worker.py", "import istio_sandbox.server", "only in the dev environment"),
        ("istio_upgrade/models/plan.py", "import istio_upgrade.planning", "Layers"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, line: str, contract: str
) -> None:
    add_import(tree / module, line)
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert verdict(result.stdout, contract) == "BROKEN", result.stdout


def verdict(report: str, contract: str) -> str:
    """KEPT or BROKEN for the contract whose name contains ``contract`` (names wrap lines)."""
    flat = " ".join(report.split())
    start = flat.index(contract)
    words = flat[start:].split()
    return next(w for w in words if w in ("KEPT", "BROKEN"))
