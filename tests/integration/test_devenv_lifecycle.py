"""No orphaned servers: the Temporal dev server and Prometheus die with their parent process.

A child Python process starts both the way the demo and the benchmarks do, writes the pids
of every process below it to a file, and is then SIGTERMed or SIGKILLed. Afterwards every
one of those pids must be gone: a SIGKILLed parent runs no ``finally``, so only the kernel
(``PR_SET_PDEATHSIG``) can stop them; a SIGTERMed one with the SIGTERM handler of the demo
stops them itself and removes their directories. The demo and the sandbox benchmark, sent
SIGTERM while they run, stop every process they started (sandboxes included) and exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from istio_upgrade.devenv import binaries
from istio_upgrade.devenv.binaries import MissingBinaryError

from ..conftest import missing

STARTUP_TIMEOUT_S = 120.0
GONE_TIMEOUT_S = 30.0

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path

    from istio_upgrade.devenv import PrometheusServer, start_dev_server

    mode, report = sys.argv[1], Path(sys.argv[2])


    def descendants(root):
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [root]
        while todo:
            for pid in children.get(todo.pop(), []):
                found.append(pid)
                todo.append(pid)
        return found


    async def main():
        temporal = await start_dev_server(ui=False)
        prometheus = await PrometheusServer().start()
        try:
            facts = {
                "servers": descendants(os.getpid()),
                "temporal": getattr(temporal, "pid", None),
                "prometheus": getattr(prometheus, "pid", None),
                "directories": [str(prometheus.directory)],
            }
            Path(f"{report}.tmp").write_text(json.dumps(facts))
            os.replace(f"{report}.tmp", report)
            await asyncio.Event().wait()
        finally:
            await prometheus.stop()
            await temporal.shutdown()


    if mode == "handled":
        # What the demo does: SIGTERM cancels the main task, every `finally` runs.
        from istio_upgrade.devenv.signals import sigterm_cancels

        async def handled():
            with sigterm_cancels():
                await main()

        try:
            asyncio.run(handled())
        except asyncio.CancelledError:
            sys.exit(143)
    else:
        asyncio.run(main())
    """
)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of ``/proc/<pid>/stat``), None once it is dead.

    A zombie counts as dead; comparing start times guards against a recycled pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return fields[19]


def _alive(started: dict[int, str]) -> list[int]:
    return [pid for pid, start in started.items() if _start_time(pid) == start]


@pytest.fixture
def servers_installed() -> None:
    try:
        binaries.temporal_cli()
        binaries.prometheus()
    except MissingBinaryError as error:
        missing(error)


_SERVERS: dict[int, str] = {}
"""Every server process a test saw (pid → start time), killed at teardown if still there."""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes of the test; at teardown a failed test's leftovers are killed, the
    children and the servers below them (only those this test started, by pid)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in _alive(_SERVERS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _SERVERS.clear()


def _run_child(
    tmp_path: Path, mode: str, children: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], dict[str, Any], dict[int, str]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    report = tmp_path / "servers.json"
    log = (tmp_path / "child.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(report)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )
    log.close()
    children.append(proc)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not report.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"child never reported its servers:\n{_log(tmp_path)}")
        time.sleep(0.1)
    facts = json.loads(report.read_text())
    return proc, facts, _identify(facts)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "child.log").read_text(errors="replace")[-4000:]


def _identify(facts: dict[str, Any]) -> dict[int, str]:
    """Pid → start time of each server, taken while they run (before any signal)."""
    servers: list[int] = facts["servers"]
    started = {pid: start for pid in servers if (start := _start_time(pid)) is not None}
    _SERVERS.update(started)
    # Both servers were up when the child reported: the dev server and Prometheus, at least.
    assert len(started) >= 2, f"expected at least two server processes, got {servers}"
    for pid in (facts["temporal"], facts["prometheus"]):
        assert pid is None or pid in started, f"{pid} not among the child's processes {servers}"
    return started


def _assert_all_gone(started: dict[int, str], tmp_path: Path, how: str) -> None:
    try:
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while (alive := _alive(started)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, (
            f"after {how} of their parent, servers still run {GONE_TIMEOUT_S:g}s later: "
            + ", ".join(f"{pid} {_cmdline(pid)}" for pid in alive)
            + f"\n{_log(tmp_path)}"
        )
    finally:
        for pid in _alive(started):  # only the processes this test's child started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
    return "?"


@pytest.mark.usefixtures("servers_installed")
def test_sigkill_of_the_parent_leaves_no_server(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, _, started = _run_child(tmp_path, "plain", children)
    proc.kill()
    proc.wait()
    _assert_all_gone(started, tmp_path, "SIGKILL")


@pytest.mark.usefixtures("servers_installed")
def test_sigterm_of_an_unprepared_parent_leaves_no_server(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """No handler: Python dies at once and runs no ``finally``; the kernel stops the servers."""
    proc, _, started = _run_child(tmp_path, "plain", children)
    proc.terminate()
    code = proc.wait(GONE_TIMEOUT_S)
    _assert_all_gone(started, tmp_path, "SIGTERM")
    assert code == -signal.SIGTERM


@pytest.mark.usefixtures("servers_installed")
def test_sigterm_with_the_demo_handler_stops_servers_cleanly(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """With ``sigterm_cancels`` the parent stops its servers itself and removes their files."""
    proc, facts, started = _run_child(tmp_path, "handled", children)
    proc.terminate()
    code = proc.wait(GONE_TIMEOUT_S)
    _assert_all_gone(started, tmp_path, "SIGTERM")
    assert code == 143, _log(tmp_path)
    for directory in facts["directories"]:
        assert not Path(directory).exists(), f"{directory} left behind"


def _running_descendants(proc: subprocess.Popen[bytes]) -> dict[int, str]:
    started = {pid: start for pid in _descendants(proc.pid) if (start := _start_time(pid))}
    _SERVERS.update(started)
    return started


@pytest.mark.slow
@pytest.mark.usefixtures("servers_installed")
def test_sigterm_stops_the_demo_and_every_server_it_started(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    demo = [sys.executable, "-c", "from istio_upgrade.cli.main import main; main()", "demo"]
    log = (tmp_path / "child.log").open("wb")
    proc = subprocess.Popen(
        [*demo, "--run-dir", str(tmp_path / "run")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    log.close()
    children.append(proc)
    # The demo prints its links once Temporal, both sandboxes, Prometheus and the worker run.
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while "\nrendered bundle:" not in _log(tmp_path):
        assert proc.poll() is None, f"demo exited before it was up:\n{_log(tmp_path)}"
        assert time.monotonic() < deadline, f"demo not up:\n{_log(tmp_path)}"
        time.sleep(0.1)
    started = _running_descendants(proc)
    # Temporal, and per cluster a sandbox and a Prometheus.
    assert len(started) >= 5, f"expected five servers below the demo, got {started}"
    proc.terminate()
    code = proc.wait(GONE_TIMEOUT_S * 2)
    _assert_all_gone(started, tmp_path, "SIGTERM")
    assert code == 130, _log(tmp_path)
    assert "every server was shut down" in _log(tmp_path)


def test_sigterm_stops_the_sandbox_benchmark_and_its_sandbox(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    log = (tmp_path / "child.log").open("wb")
    bench = Path(__file__).parents[2] / "bench" / "sandbox_large.py"
    proc = subprocess.Popen(
        [sys.executable, str(bench), "--scenario", "demo", "--samples", "3"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    children.append(proc)
    # SIGTERM as soon as the sandbox process exists: while it may still be starting, the
    # case a plain `with SandboxProcess()` would leave running.
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (started := _running_descendants(proc)):
        assert proc.poll() is None, f"benchmark exited early:\n{_log(tmp_path)}"
        assert time.monotonic() < deadline, "the benchmark started no sandbox"
        time.sleep(0.05)
    proc.terminate()
    code = proc.wait(GONE_TIMEOUT_S * 2)
    _assert_all_gone(started, tmp_path, "SIGTERM")
    assert code == 143, _log(tmp_path)
