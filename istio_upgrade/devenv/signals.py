"""SIGTERM as a clean shutdown for the programs that start local servers (demo, benchmarks).

Python's default SIGTERM action ends the process at once: no ``finally`` runs, so no server
is stopped in order and no temporary directory is removed (the kernel still stops the servers,
see :mod:`istio_upgrade.devenv.processes`, but only after we are gone). These helpers turn the
first SIGTERM into the same unwinding Ctrl-C causes. A second SIGTERM during that shutdown is
ignored rather than cutting it short; SIGKILL remains the way to stop at once.

Entry points install them; library code (``DevStack``, the launchers) does not, because a
signal handler belongs to the program, not to whoever happens to start a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Terminated(SystemExit):
    """Raised by :func:`sigterm_raises` where the program was when SIGTERM arrived.

    A ``SystemExit`` (code 143, 128 + SIGTERM) so ``except Exception`` does not swallow it and
    an uncaught one ends the program with the conventional status.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """For synchronous programs: the first SIGTERM raises :class:`Terminated`.

    Only from the main thread (Python runs signal handlers there). The previous handler is
    restored on exit.
    """
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_cancels(task: asyncio.Task[Any] | None = None) -> Iterator[None]:
    """For asyncio programs: the first SIGTERM cancels ``task`` (default: the current task).

    The cancellation travels like the one ``asyncio.run`` makes of Ctrl-C, so every
    ``finally`` / ``async with`` stops its server. Must be entered from the loop's thread.
    """
    loop = asyncio.get_running_loop()
    target = task or asyncio.current_task()
    if target is None:
        raise RuntimeError("sigterm_cancels() needs a task to cancel")
    fired = False

    def on_sigterm() -> None:
        nonlocal fired
        if not fired:
            fired = True
            target.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
