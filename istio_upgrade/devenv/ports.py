"""Local TCP ports for the servers the dev stack starts."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The port is released before returning, so a racing process could take it; callers
    start their server immediately and the window is small enough for tests and the demo.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be bound (used to prefer well-known ports like 8233)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def preferred_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free, else any free port."""
    return preferred if port_is_free(preferred, host) else free_port(host)
