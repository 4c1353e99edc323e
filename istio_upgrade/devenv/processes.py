"""Child server processes that never outlive the process that started them.

Every local server (the Temporal dev server, Prometheus) is started through :func:`spawn`:

- in its own session, so a Ctrl-C in the terminal reaches only us and we stop the servers in
  order (the worker still needs Temporal while it shuts down);
- with Linux's ``PR_SET_PDEATHSIG`` set to SIGTERM, so the kernel stops the server when its
  parent dies for any reason, SIGKILL and crashes included — where no ``finally`` runs.

``PR_SET_PDEATHSIG`` is cleared by ``fork`` but survives ``execve``: it has to be set in the
child between the two (``preexec_fn``), and it covers the exec'ed server itself, not processes
that server forks (neither Temporal's CLI nor Prometheus forks). The "parent" whose death
fires the signal is the *thread* that forked, so spawn from a thread that lives as long as
the servers (the event loop's; not a short-lived worker thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1
"""``<linux/prctl.h>``."""


def _libc(name: str, argtypes: list[Any]) -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_long if name == "signal" else ctypes.c_int
    return function


# Resolved once in the parent: the child between fork and exec must do as little as possible
# (no imports, no dlopen) because other threads' locks are frozen in whatever state they were.
_PRCTL = _libc("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])
# libc's signal(), not signal.signal(): the latter refuses to run outside the main thread.
_SIGNAL = _libc("signal", [ctypes.c_int, ctypes.c_void_p])
_SIG_DFL = 0


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    Returns None where ``prctl`` does not exist (not Linux): there a SIGKILLed parent can
    leave its servers behind, and only the clean shutdown paths stop them.
    """
    prctl, set_handler = _PRCTL, _SIGNAL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent:
            os._exit(125)
        # An ignored SIGTERM is inherited through exec and would make the death signal moot.
        if set_handler is not None:
            set_handler(sig, _SIG_DFL)

    return preexec


def spawn(
    args: Sequence[str], *, log: IO[bytes], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process that stops with us (see the module docstring).

    Args:
        args: The command line.
        log: Where its stdout and stderr go.
        cwd: Working directory.

    Returns:
        The running process.
    """
    # A plain Popen (not asyncio's) so that stop() works outside any event loop.
    return subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns once the process is reaped."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
