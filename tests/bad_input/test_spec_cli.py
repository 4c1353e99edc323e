"""Entry point 2: ``istio-upgrade plan|start -f FILE`` exits 2 with one ``field: message`` line
per problem, before it talks to Temporal — against a live Temporal, worker and sandbox, so a
spec that slipped through would be planned or started, and seen writing."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.main import cli
from tests.bad_input.conftest import SharedCluster, assert_explains
from tests.bad_input.corpus import BASE_SPEC, SPEC_CASES, Case, param

pytestmark = pytest.mark.bad_input

DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def write_spec(directory: Path, case: Case) -> Path:
    """The case as the YAML file an operator would write (checked to read back the same)."""
    text = yaml.dump(case.doc, Dumper=DUMPER, allow_unicode=True, sort_keys=False, width=2**20)
    assert _same(yaml.load(text, Loader=LOADER), case.doc), f"{case.id} does not survive YAML"
    path = directory / f"{case.id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def invoke(shared: SharedCluster, *args: str) -> Result:
    base = ["--address", shared.address, "--task-queue", shared.task_queue]
    # The command runs its own event loop (asyncio.run): give it a thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, [*base, *args], catch_exceptions=False)


def assert_usage_error(result: Result, path: Path) -> str:
    assert result.exit_code == ExitCode.USAGE, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"{path}: ") for line in lines), result.stderr
    return "\n".join(line.removeprefix(f"{path}: ") for line in lines)


async def test_the_base_spec_plans(shared_cluster: SharedCluster, tmp_path: Path) -> None:
    """The harness works: the valid base is accepted and dry-run by the worker, writing nothing."""
    path = tmp_path / "base.json"
    path.write_text(json.dumps(BASE_SPEC))
    shared_cluster.reset()
    result = await invoke(shared_cluster, "plan", "-f", str(path), "-o", "json")
    assert result.exit_code == ExitCode.OK, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["outcome"] == "DRY_RUN"
    assert shared_cluster.writes() == 0


@pytest.mark.parametrize("command", ["plan", "start"])
@pytest.mark.parametrize("case", [param(c) for c in SPEC_CASES])
async def test_the_cli_refuses(
    shared_cluster: SharedCluster, tmp_path: Path, case: Case, command: str
) -> None:
    path = write_spec(tmp_path, case)
    shared_cluster.reset()
    result = await invoke(shared_cluster, command, "-f", str(path))
    assert_explains(assert_usage_error(result, path), case)
    assert shared_cluster.writes() == 0


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

FILES: list[tuple[str, str, bytes, tuple[str, ...]]] = [
    ("not-yaml", "s.yaml", b"cluster: [unclosed\n", ("(file)", "not valid YAML")),
    ("not-json", "s.json", b"{'cluster': 1}", ("(file)", "not valid JSON")),
    ("empty-file", "s.yaml", b"", ("(file)", "empty")),
    ("list-root", "s.yaml", b"- cluster: demo\n", ("(root)", "mapping")),
    ("scalar-root", "s.yaml", b"upgrade\n", ("(root)", "mapping")),
    ("two-documents", "s.yaml", b"cluster: {name: a}\n---\ncluster: {name: b}\n",
     ("(file)", "one YAML document")),
    ("python-tag", "s.yaml", b"cluster: !!python/object/apply:os.system [id]\n",
     ("(file)", "not valid YAML")),
    ("latin-1", "s.yaml", "cluster: {name: d\u00e9mo}\n".encode("latin-1"),
     ("(file)", "UTF-8")),
    ("binary", "s.yaml", b"\x00\x01\x02\xff\xfe", ("(file)", "UTF-8")),
    ("duplicate-key", "s.yaml",
     b"cluster: {name: demo}\ntarget: {version: 1.31.0}\ncluster: {name: prod}\n",
     ("cluster", "line 3", "twice")),
    ("duplicate-nested-key", "s.yaml",
     b"cluster: {name: demo, name: prod}\ntarget: {version: 1.31.0}\n",
     ("cluster.name", "twice")),
    ("billion-laughs", "s.yaml", (BILLION_LAUGHS + "cluster: *i\ntarget: *i\n").encode(),
     ("cluster", "valid dictionary")),
    ("json-nan", "s.json",
     b'{"cluster": {"name": "demo"}, "target": {"version": "1.31.0"}, '
     b'"migration": {"growth_factor": NaN}}',
     ("migration.growth_factor", "finite number")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "needles"), [pytest.param(f, t, n, id=i) for i, f, t, n in FILES]
)
async def test_unusable_files_are_one_clear_line(
    shared_cluster: SharedCluster, tmp_path: Path, name: str, text: bytes, needles: tuple[str, ...]
) -> None:
    path = tmp_path / name
    path.write_bytes(text)
    shared_cluster.reset()
    for command in ("plan", "start"):
        message = assert_usage_error(await invoke(shared_cluster, command, "-f", str(path)), path)
        for needle in needles:
            assert needle in message, message
    assert shared_cluster.writes() == 0


async def test_a_directory_is_not_a_spec(shared_cluster: SharedCluster, tmp_path: Path) -> None:
    result = await invoke(shared_cluster, "start", "-f", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert "is a directory" in result.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [(["abort", "istio-upgrade.demo.1-31-0", "-m", ""], "reason")],
    ids=["abort-without-reason"],
)
async def test_operator_messages_refuse_bad_options(
    shared_cluster: SharedCluster, args: list[str], field: str
) -> None:
    """Options that become an update's argument are checked before the update is sent."""
    shared_cluster.reset()
    result = await invoke(shared_cluster, *args)
    assert result.exit_code == ExitCode.USAGE, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith(f"options: {field}: "), result.stderr
    assert shared_cluster.writes() == 0
