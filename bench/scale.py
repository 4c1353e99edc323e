"""How an upgrade's figures grow with the mesh: the overhead benchmark at several sizes.

Runs :mod:`bench.overhead`'s upgrade on the ``large`` shape (2 Deployments x 5 replicas per
namespace) at each size of ``--sizes`` (default 200, 600 and 2,000 namespaces: 2,000 is the
``large`` scenario's 20,000 pods), one fresh stack per size, and fits each figure against the
namespace count on a log-log scale: the slope is the growth exponent (1 linear, 0 constant),
so "linear" is a measured claim. A size whose upgrade fails keeps its figures and the reason
(``error``) instead of ending the benchmark.

Only the first ``--traffic-namespaces`` (default 200) namespaces carry traffic, at every
size, so Prometheus's load is the same at each size (the sandbox's ``/metrics`` is ~14 KB
per serving workload); a batch of idle namespaces is INCONCLUSIVE to today's gate and soaks
until ``max_soak_seconds``, which ``lower_bound_gate_s`` accounts for.

Usage::

    python -m bench.scale [--sizes 200,600,2000] [--json docs/scale-last-run.json]
"""

from __future__ import annotations

import time
from typing import Any

from bench._harness import (
    GATE,
    MIGRATION,
    TIMINGS,
    Options,
    Shape,
    fit_exponent,
    machine,
    print_table,
    product_rows,
    run_product,
    run_sync,
    under_load,
    write_json,
)
from bench.overhead import parser as base_parser

FIGURES: dict[str, tuple[str, ...]] = {
    "wall_s": ("wall_s",),
    "lower_bound_s": ("lower_bound_s",),
    "overhead_s": ("overhead_s",),
    "overhead_ratio": ("overhead_ratio",),
    "kube_requests": ("kube_requests", "total"),
    "kube_requests_per_namespace": ("kube_requests", "per_migrated_namespace"),
    "history_events": ("history", "events_total"),
    "history_bytes": ("history", "bytes_total"),
    "history_bytes_per_evaluation": ("history", "bytes_per_evaluation"),
    "gate_payload_bytes_per_evaluation": ("history", "gate_payload_bytes_per_evaluation"),
    "promql_queries_per_evaluation": ("promql", "queries_per_evaluation"),
    "worker_peak_rss_mb": ("worker", "peak_rss_mb"),
    "worker_cpu_s": ("worker", "cpu_s"),
}
"""Figure name → where it sits in one run's figures."""


def pick(run: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: its value at each size and the log-log slope over the successful sizes."""
    ok = [r for r in runs if r.get("error") is None and r.get("wall_s") is not None]
    out: dict[str, Any] = {}
    for name, path in FIGURES.items():
        points = [(r["shape"]["namespaces"], pick(r, path)) for r in ok]
        usable = [(x, y) for x, y in points if y is not None]
        out[name] = {
            "values": {str(x): y for x, y in points},
            "exponent": fit_exponent([p[0] for p in usable], [p[1] for p in usable])
            if usable
            else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.split("\n\n")[0])
    p.set_defaults(deployments=2, replicas=5, traffic_namespaces=200)
    p.add_argument("--sizes", default="200,600,2000", help="namespace counts, comma-separated")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    host = machine()
    began = time.time()
    runs: list[dict[str, Any]] = []
    doc: dict[str, Any] = {
        "benchmark": "scale",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "machine": host,
        "gate": GATE,
        "migration": MIGRATION,
        "timings": TIMINGS,
        "runs": runs,
    }
    for size in sizes:
        traffic = None if args.traffic_namespaces is None else min(size, args.traffic_namespaces)
        shape = Shape(size, args.deployments, args.replicas, traffic)
        options = Options(shape=shape, workdir=args.workdir, timeout_s=args.timeout)
        try:
            fig = run_sync(run_product(options))
        except Exception as error:  # a size that cannot even start is a figure too
            fig = {"shape": {"namespaces": size}, "error": f"{type(error).__name__}: {error}"}
        runs.append(fig)
        print_table(f"scale {shape.label}", product_rows(fig, at_scale=size >= 2000))
        doc["growth"] = growth(runs)
        write_json(args.json, doc)  # after every size: a later failure keeps the earlier ones
    host["under_load"] = under_load(host["loadavg_at_start"], host["nproc"])
    doc["growth"] = growth(runs)
    print_table(
        "growth exponent (log-log slope vs namespaces; 1 = linear)",
        [(name, g["exponent"], None) for name, g in doc["growth"].items()],
    )
    write_json(args.json, doc)
    return 0 if all(r.get("error") is None for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
