"""How the ``istio-upgrade`` process ends once its work is done: without the interpreter's
finalization.

The Temporal SDK runs a native (Rust) runtime with its own threads. When the interpreter
finalizes, it tears that runtime and the client's connections down in garbage-collection order,
and that teardown occasionally crashes a process whose work had already finished: a stopped
worker exited -6 (SIGABRT), a ``start`` that had printed its run id exited -11 (SIGSEGV). A
Deployment reports the first as a crash, release tooling the second as a failed start. So both
entry points leave with :func:`exit_without_finalization` once every command, ``with`` block and
``finally`` has run.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys


def report_native_crashes() -> None:
    """Print every thread's Python stack if native code crashes (when stderr is a real file)."""
    with contextlib.suppress(OSError, ValueError):
        faulthandler.enable()


def exit_code_of(stop: SystemExit) -> int:
    """The process exit code :class:`SystemExit` stands for, as the interpreter computes it."""
    code = stop.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    # sys.exit("message") prints the message and exits 1.
    with contextlib.suppress(OSError, ValueError):
        print(code, file=sys.stderr)
    return 1


def exit_without_finalization(code: int) -> None:
    """Flush what was printed or logged and leave with ``code``, skipping finalization."""
    for stream in (sys.stdout, sys.stderr):
        # A closed or broken pipe: nothing more can be said.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
