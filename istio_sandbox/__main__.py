"""``python -m istio_sandbox up --scenario demo --kubeconfig ./sandbox.kubeconfig``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from istio_sandbox.scenario import shipped_scenarios


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m istio_sandbox",
        description="A simulated Kubernetes cluster with an Istio mesh.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="serve a sandbox in the foreground until Ctrl-C")
    up.add_argument(
        "--scenario",
        default="demo",
        help=f"shipped scenario ({', '.join(shipped_scenarios())}) or path to a YAML file",
    )
    up.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig file to write")
    up.add_argument("--host", default="127.0.0.1", help="listen address")
    up.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one")
    up.add_argument("--context", default="sandbox", help="kubeconfig context name")
    up.add_argument("--ready-file", type=Path, default=None, help="JSON file written once serving")
    up.add_argument(
        "--rbac",
        action="store_true",
        default=None,
        help="enforce RBAC on token-authenticated callers (default: as the scenario says)",
    )
    up.add_argument(
        "--https-port",
        type=int,
        default=0,
        help="also serve the API over HTTPS on this port (token kubeconfigs); 0 picks a free "
        "one, -1 serves HTTP only",
    )
    up.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="directory keeping the HTTPS certificate (made when absent); default a temp dir",
    )
    up.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="load the cluster from this file when it exists; write it there on SIGTERM/SIGINT",
    )
    sub.add_parser("scenarios", help="list the shipped scenarios")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "scenarios":
        print("\n".join(shipped_scenarios()))
        return 0
    # Imported here so `scenarios` and `--help` stay fast.
    from istio_sandbox.server import run_up

    return run_up(
        args.scenario,
        args.kubeconfig,
        args.host,
        args.port,
        args.context,
        args.ready_file,
        rbac=args.rbac,
        state_file=args.state_file,
        https_port=None if args.https_port < 0 else args.https_port,
        tls_dir=args.tls_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
