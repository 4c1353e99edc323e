"""A sandbox started by :class:`SandboxProcess` never outlives the process that started it,
even one killed with SIGKILL, nor dies with the thread that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from istio_sandbox.server import SandboxProcess

SCENARIO = """
name: orphans
timings: {pod_start_s: 0.1, pod_ready_s: 0.1, istiod_ready_s: 0.2}
revisions:
  - version: 1.30.3
"""

CHILD = """
import sys, time
from pathlib import Path
from istio_sandbox.server import SandboxProcess
sandbox = SandboxProcess(sys.argv[1], workdir=Path(sys.argv[2])).start()
print(sandbox.pid, flush=True)
time.sleep(600)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(fact: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not fact():
        assert time.monotonic() < deadline, "the fact never became true"
        time.sleep(0.05)


def test_sandbox_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    scenario = tmp_path / "orphans.yaml"
    scenario.write_text(SCENARIO)
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(scenario), str(tmp_path / "work")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent printed {line!r}"
        pid = int(line)
        assert _alive(pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    try:
        _wait_for(lambda: not _alive(pid))
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sandbox_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    scenario = tmp_path / "orphans.yaml"
    scenario.write_text(SCENARIO)
    sandbox = SandboxProcess(scenario, workdir=tmp_path / "work")
    starter = threading.Thread(target=sandbox.start)
    starter.start()
    starter.join()
    tid = starter.native_id
    try:
        # The starting thread is gone from the process, so its death signal would have fired.
        _wait_for(lambda: not Path(f"/proc/self/task/{tid}").exists())
        assert _alive(sandbox.pid) and sandbox.healthz()
    finally:
        sandbox.stop()
