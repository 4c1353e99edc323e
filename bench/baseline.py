"""Ours against what an operator scripts with ``kubectl``, on fresh sandboxes of one scenario.

Three upgrades 1.30.3 → 1.31.0 in one run, each on a fresh sandbox of the same generated
scenario (with its Prometheus scraping, as for ours), driven by real ``kubectl`` through the
kubeconfig the sandbox writes:

- **ours**: the product, as :mod:`bench.overhead` runs it.
- **(a) the docs procedure**: Istio's canary-upgrade guide as a careful operator scripts it —
  install the revision, wait for istiod, then per namespace ``kubectl label namespace X
  istio.io/rev=<new> istio-injection- --overwrite``, ``kubectl rollout restart deployment -n X``,
  ``kubectl rollout status deployment -n X``, then a fixed sleep of our soak. One namespace
  after the other; ``--docs-sample K`` runs the first K namespaces of our plan and projects the
  loop linearly to all of them (it is sequential, so the projection is exact up to noise).
- **(b) the bare loop**: our plan (the same batches, taken from our run) with ``kubectl`` and
  no gate — per batch one ``kubectl label`` of its namespaces, ``rollout restart`` and
  ``rollout status`` per namespace (``--parallel`` at once), then warm-up + soak; the cleanup
  grace at the end. Tag moves and the old revision's removal are left out (ours does them in
  well under a second of API calls; see ``step_seconds``).

``docs_ratio = wall(a) / wall(ours)`` (target ≥ 5) and ``loop_ratio = wall(ours) / wall(b)``
(target ≤ 1.05) isolate what the orchestration costs.

Usage::

    python -m bench.baseline [--namespaces 200 --deployments 5 --replicas 2]
        [--docs-sample 20] [--parallel 8] [--json docs/baseline-last-run.json]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._harness import (
    GATE,
    GRACE_SECONDS,
    MIGRATION,
    TARGET_REVISION,
    TIMINGS,
    Options,
    Shape,
    machine,
    print_table,
    request_figures,
    restart_patches,
    run_product,
    run_sync,
    under_load,
    write_bundle,
    write_json,
    write_scenario,
)
from bench.overhead import parser as base_parser

_INTERVAL = float(GATE["interval_seconds"])
SOAK_S = -(-float(GATE["soak_seconds"]) // _INTERVAL) * _INTERVAL
"""Our soak as the gate ends it (the first evaluation at or after ``soak_seconds``)."""
WARMUP_S = float(GATE["warmup_seconds"])


class Kubectl:
    """Real ``kubectl`` processes against one kubeconfig, timed and counted."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = str(kubeconfig)
        self.calls = 0
        self.seconds = 0.0
        self.failures: list[str] = []

    async def __call__(self, *args: str) -> int:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            "--kubeconfig",
            self.kubeconfig,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        self.calls += 1
        self.seconds += time.monotonic() - started
        if proc.returncode:
            self.failures.append(f"kubectl {' '.join(args)}: {err.decode()[-300:]}")
        return proc.returncode or 0


async def _install(kubectl: Kubectl, bundle: Path) -> float:
    started = time.monotonic()
    await kubectl(
        "apply", "--server-side", "--field-manager=operator", "--validate=false", "-f", str(bundle)
    )
    await kubectl(
        "rollout",
        "status",
        f"deployment/istiod-{TARGET_REVISION}",
        "-n",
        "istio-system",
        "--timeout=120s",
    )
    return time.monotonic() - started


async def _migrate_namespace(kubectl: Kubectl, namespace: str) -> None:
    await kubectl(
        "label", "namespace", namespace, f"istio.io/rev={TARGET_REVISION}", "istio-injection-",
        "--overwrite",
    )  # fmt: skip
    await kubectl("rollout", "restart", "deployment", "-n", namespace)
    await kubectl("rollout", "status", "deployment", "-n", namespace, "--timeout=300s")


async def docs_procedure(
    kubectl: Kubectl, bundle: Path, namespaces: Sequence[str]
) -> dict[str, Any]:
    """(a): install, then one namespace after the other with a soak after each."""
    started = time.monotonic()
    install_s = await _install(kubectl, bundle)
    loop_started = time.monotonic()
    for namespace in namespaces:
        await _migrate_namespace(kubectl, namespace)
        await asyncio.sleep(SOAK_S)
    loop_s = time.monotonic() - loop_started
    return {
        "wall_s": round(time.monotonic() - started, 2),
        "install_s": round(install_s, 2),
        "loop_s": round(loop_s, 2),
        "namespaces_run": len(namespaces),
        "per_namespace_s": round(loop_s / len(namespaces), 3) if namespaces else None,
    }


async def bare_loop(
    kubectl: Kubectl, bundle: Path, batches: Sequence[Sequence[str]], parallel: int
) -> dict[str, Any]:
    """(b): our batches, warm-up and soak with kubectl, no gate."""
    started = time.monotonic()
    install_s = await _install(kubectl, bundle)
    gate = asyncio.Semaphore(parallel)

    async def limited(*args: str) -> None:
        async with gate:
            await kubectl(*args)

    migrate_s: list[float] = []
    for batch in batches:
        began = time.monotonic()
        await kubectl(
            "label", "namespace", *batch, f"istio.io/rev={TARGET_REVISION}", "istio-injection-",
            "--overwrite",
        )  # fmt: skip
        await asyncio.gather(*(limited("rollout", "restart", "deployment", "-n", n) for n in batch))
        await asyncio.gather(
            *(limited("rollout", "status", "deployment", "-n", n, "--timeout=300s") for n in batch)
        )
        migrate_s.append(round(time.monotonic() - began, 2))
        await asyncio.sleep(WARMUP_S + SOAK_S)
    await asyncio.sleep(GRACE_SECONDS)
    return {
        "wall_s": round(time.monotonic() - started, 2),
        "install_s": round(install_s, 2),
        "migrate_s_per_batch": migrate_s,
    }


async def _on_fresh_sandbox(options: Options, name: str, drive: Any, *args: Any) -> dict[str, Any]:
    from istio_upgrade.devenv.stack import DevStack

    shape = options.shape
    run_dir = options.workdir / f"{name}-{shape.label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = write_scenario(shape, run_dir)
    bundle = write_bundle(run_dir)
    async with DevStack(run_dir, ui=False) as stack:
        cluster = await stack.add_cluster("bench", scenario)
        await asyncio.to_thread(cluster.sandbox.reset_stats)
        kubectl = Kubectl(cluster.sandbox.kubeconfig)
        out: dict[str, Any] = await drive(kubectl, bundle, *args)
        entries, _ = await asyncio.to_thread(cluster.sandbox.requests, 0)
    migrated = out.get("namespaces_run") or shape.namespaces
    restarts = restart_patches(entries)
    out["kube_requests"] = request_figures(entries, migrated, restarts)
    out["kubectl"] = {
        "calls": kubectl.calls,
        "seconds_in_kubectl": round(kubectl.seconds, 2),
        "failures": kubectl.failures[:10],
        "failure_count": len(kubectl.failures),
    }
    return out


async def run_all(options: Options, docs_sample: int | None, parallel: int) -> dict[str, Any]:
    ours = await run_product(options)
    plan: list[list[str]] = ours.get("_plan") or []
    if not plan:
        return {"ours": ours, "error": "our run left no plan to follow"}
    loop = await _on_fresh_sandbox(options, "bare-loop", bare_loop, plan, parallel)
    order = [n for batch in plan for n in batch]
    sample = order[: docs_sample or len(order)]
    docs = await _on_fresh_sandbox(options, "docs", docs_procedure, sample)
    projected = docs["install_s"] + docs["loop_s"] * len(order) / max(1, len(sample))
    docs["projected_wall_s"] = round(projected, 1)
    docs["projected"] = len(sample) < len(order)
    wall = ours.get("wall_s")
    return {
        "ours": ours,
        "bare_loop": loop,
        "docs_procedure": docs,
        "docs_ratio": round(projected / wall, 2) if wall else None,
        "loop_ratio": round(wall / loop["wall_s"], 3) if wall else None,
    }


def rows(doc: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    ours, loop, docs = doc["ours"], doc.get("bare_loop", {}), doc.get("docs_procedure", {})
    docs_wall = docs.get("projected_wall_s")
    sample = (
        f" (projected from {docs.get('namespaces_run')} namespaces)"
        if docs.get("projected")
        else ""
    )
    return [
        ("ours: outcome", ours.get("outcome") or ours.get("error"), "SUCCEEDED"),
        ("ours: wall_s", ours.get("wall_s"), None),
        ("ours: lower_bound_s", ours.get("lower_bound_s"), None),
        ("(b) bare kubectl loop, our plan: wall_s", loop.get("wall_s"), None),
        ("(a) docs procedure: wall_s" + sample, docs_wall, None),
        ("(a) per namespace s", docs.get("per_namespace_s"), None),
        ("docs_ratio = (a) / ours", doc.get("docs_ratio"), "≥ 5"),
        ("loop_ratio = ours / (b)", doc.get("loop_ratio"), "≤ 1.05"),
        ("ours: kube requests", ours.get("kube_requests", {}).get("total"), None),
        ("(b): kube requests", loop.get("kube_requests", {}).get("total"), None),
        ("(b): kubectl calls", loop.get("kubectl", {}).get("calls"), None),
        ("(a): kube requests per namespace", docs.get("kube_requests", {}).get(
            "per_migrated_namespace"
        ), None),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--docs-sample",
        type=int,
        default=20,
        help="namespaces the docs procedure runs before its loop is projected (0: all)",
    )
    p.add_argument("--parallel", type=int, default=8, help="kubectl processes at once in (b)")
    args = p.parse_args(argv)
    shape = Shape(args.namespaces, args.deployments, args.replicas, args.traffic_namespaces)
    host = machine()
    began = time.time()
    options = Options(shape=shape, workdir=args.workdir, timeout_s=args.timeout)
    doc = run_sync(run_all(options, args.docs_sample or None, args.parallel))
    host["under_load"] = under_load(host["loadavg_at_start"], host["nproc"])
    doc = {
        "benchmark": "baseline",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "machine": host,
        "gate": GATE,
        "migration": MIGRATION,
        "timings": TIMINGS,
        "soak_s": SOAK_S,
        "warmup_s": WARMUP_S,
        **doc,
    }
    print_table(f"baselines {shape.label}", rows(doc))
    write_json(args.json, doc)
    return 0 if doc["ours"].get("error") is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
