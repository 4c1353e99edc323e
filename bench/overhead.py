"""Overhead of one upgrade against the physical lower bound of the sandbox it runs on.

Starts a sandbox of N namespaces x D Deployments x R replicas (default 200 x 5 x 2), a real
Temporal dev server, a real Prometheus scraping the sandbox every second and the worker as a
child process (``python -m istio_upgrade.worker``), then upgrades 1.30.3 → 1.31.0 with the
demo's short gate. Reports ``wall_s``, ``lower_bound_s`` (install-ready time + per batch the
slowest rollout + warm-up + soak, + the cleanup grace, from the sandbox's timing model),
``overhead_ratio``, Kubernetes requests (the sandbox's request log), PromQL queries per gate
evaluation (Prometheus's own counters), history events and bytes per run and per evaluation
(every run, following continue-as-new), and the worker's peak RSS and CPU seconds.

Usage::

    python -m bench.overhead [--namespaces 200 --deployments 5 --replicas 2]
        [--traffic-namespaces N] [--json docs/bench/overhead-last-run.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench._harness import (
    GATE,
    MIGRATION,
    TIMINGS,
    Options,
    Shape,
    machine,
    print_table,
    product_rows,
    run_product,
    run_sync,
    under_load,
    write_json,
)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--namespaces", type=int, default=200)
    p.add_argument("--deployments", type=int, default=5)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument(
        "--traffic-namespaces",
        type=int,
        default=None,
        help="only the first N namespaces carry traffic (default: all)",
    )
    p.add_argument("--workdir", type=Path, default=Path("/tmp/istio-upgrade-bench"))
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per upgrade")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n\n")[0]).parse_args(argv)
    shape = Shape(args.namespaces, args.deployments, args.replicas, args.traffic_namespaces)
    host = machine()
    began = time.time()
    fig = run_sync(run_product(Options(shape=shape, workdir=args.workdir, timeout_s=args.timeout)))
    host["under_load"] = under_load(host["loadavg_at_start"], host["nproc"]) or under_load(
        fig.get("loadavg", {}).get("after", []), host["nproc"]
    )
    doc = {
        "benchmark": "overhead",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "machine": host,
        "gate": GATE,
        "migration": MIGRATION,
        "timings": TIMINGS,
        "run": fig,
    }
    print_table(f"overhead {shape.label}", product_rows(fig, at_scale=False))
    write_json(args.json, doc)
    return 0 if fig.get("error") is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
