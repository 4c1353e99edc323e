"""``istio-upgrade sandbox``: serve the simulated cluster (a development tool).

Registered only where the ``istio_sandbox`` package is installed (``pip install -e .`` of a
checkout); the worker image has no sandbox and no such command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

import istio_sandbox  # noqa: F401  (not installed: the command is not registered)


@click.group()
def sandbox() -> None:
    """The simulated cluster: a Kubernetes API server with Istio injection and mesh metrics."""


@sandbox.command("up")
@click.option(
    "--scenario",
    default="demo",
    show_default=True,
    help="Shipped scenario (see `sandbox scenarios`) or path to a scenario YAML file.",
)
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the kubeconfig pointing at the sandbox.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--context", default="sandbox", show_default=True, help="kubeconfig context name.")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File receiving the URLs as JSON once serving (for scripts).",
)
@click.option(
    "--rbac/--no-rbac",
    default=None,
    help="Enforce RBAC on tokens (default: as the scenario says; off in the shipped ones).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Load the cluster from this file if it exists; write it there on Ctrl-C/SIGTERM.",
)
@click.option(
    "--https-port",
    type=int,
    default=0,
    show_default=True,
    help="Also serve HTTPS here (kubectl sends tokens only over TLS); 0 picks a free port.",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory keeping the HTTPS certificate; default a temporary one.",
)
def sandbox_up(
    scenario: str,
    kubeconfig: Path,
    host: str,
    port: int,
    context: str,
    ready_file: Path | None,
    rbac: bool | None,
    state_file: Path | None,
    https_port: int,
    tls_dir: Path | None,
) -> None:
    """Serve a sandbox cluster until Ctrl-C; exit 2 for an unusable scenario or state file."""
    from istio_sandbox.server import run_up

    sys.exit(
        run_up(
            scenario=scenario,
            kubeconfig=kubeconfig,
            host=host,
            port=port,
            context=context,
            ready_file=ready_file,
            rbac=rbac,
            state_file=state_file,
            https_port=https_port,
            tls_dir=tls_dir,
        )
    )


@sandbox.command("scenarios")
def sandbox_scenarios() -> None:
    """List the shipped scenarios."""
    from istio_sandbox.scenario import shipped_scenarios

    click.echo("\n".join(shipped_scenarios()))
