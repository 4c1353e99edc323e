"""The worker image carries the product without the sandbox, and still runs.

Builds the wheel from exactly what ``deploy/Dockerfile`` copies into its build stage, as
``docker build`` would, then imports the worker and the CLI from it with the sandbox
unavailable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def build_stage_copies() -> list[str]:
    """Sources of the ``COPY`` lines of the first stage (the build stage)."""
    build_stage = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[1]
    sources: list[str] = []
    for match in re.finditer(r"^COPY (?!--from)(.+)$", build_stage, re.MULTILINE):
        sources += match.group(1).split()[:-1]
    return sources


def test_the_image_copies_no_sandbox() -> None:
    copies = build_stage_copies()
    assert "istio_upgrade" in copies
    assert not any("sandbox" in c for c in copies), copies


def test_the_wheel_of_the_image_has_no_sandbox_and_its_worker_runs(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for source in build_stage_copies():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(context)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("istio_upgrade-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "istio_upgrade/worker.py" in names
    assert not [n for n in names if n.startswith("istio_sandbox")]

    # Import from the wheel alone, with the sandbox made unimportable.
    probe = (
        "import sys; sys.modules['istio_sandbox'] = None\n"
        "import istio_upgrade, istio_upgrade.worker, istio_upgrade.cli.main as m\n"
        "assert istio_upgrade.__file__.startswith(sys.argv[1]), istio_upgrade.__file__\n"
        "assert 'worker' in m.cli.commands and 'sandbox' not in m.cli.commands\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(wheel)],
        cwd=tmp_path,  # not the checkout, which `-c` would put first on sys.path
        env={"PYTHONPATH": str(wheel), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
