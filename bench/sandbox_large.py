"""Benchmark the sandbox at scale: start the ``large`` scenario and time what clients feel.

Measures, with the real ``kubernetes`` client against a sandbox in a child process:
time to serve, time until every Deployment reports all replicas ready (what
``kubectl rollout status`` reads), p50/p95 of a namespace's pod list and of the
all-namespaces pod list, and the ``/metrics`` render and fetch time. Prints JSON.

Usage::

    python -m bench.sandbox_large [--scenario large] [--samples 20] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

from istio_sandbox.server import SandboxProcess
from istio_upgrade.devenv.signals import sigterm_raises


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "samples": len(ordered),
    }


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _raw_json(response: Any) -> Any:
    return json.loads(response.data)


def _deployments_ready(apps: Any) -> tuple[int, int]:
    # Raw JSON: deserialising thousands of objects into models would time the client.
    body = _raw_json(apps.list_deployment_for_all_namespaces(_preload_content=False))
    items = body["items"]
    ready = sum(
        1
        for d in items
        if (d.get("status") or {}).get("readyReplicas", 0) == d["spec"].get("replicas", 1)
        and (d.get("status") or {}).get("updatedReplicas", 0) == d["spec"].get("replicas", 1)
    )
    return ready, len(items)


def _metric(page: str, name: str) -> float | None:
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@contextlib.contextmanager
def _running(sandbox: SandboxProcess) -> Iterator[SandboxProcess]:
    """Start, and stop in every case: ``with SandboxProcess()`` skips its ``__exit__`` when
    SIGTERM (``Terminated``) lands while the sandbox is still starting."""
    try:
        yield sandbox.start()
    finally:
        sandbox.stop()


def run(scenario: str, samples: int, ready_timeout_s: float) -> dict[str, Any]:
    """Start the scenario, measure, stop; returns the figures."""
    results: dict[str, Any] = {"scenario": scenario}
    started = time.perf_counter()
    with _running(SandboxProcess(scenario, startup_timeout_s=300)) as sandbox:
        results["time_to_serve_s"] = round(time.perf_counter() - started, 2)
        api_client = config.new_client_from_config(str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)

        ready, total = 0, -1
        while ready != total:
            if time.perf_counter() - started > ready_timeout_s:
                results["error"] = f"{ready}/{total} deployments ready after {ready_timeout_s}s"
                break
            time.sleep(1.0)
            ready, total = _deployments_ready(apps)
        results["time_all_ready_s"] = round(time.perf_counter() - started, 2)
        results["deployments"] = total
        pods = _raw_json(core.list_pod_for_all_namespaces(_preload_content=False))["items"]
        results["pods"] = len(pods)
        results["pods_ready"] = sum(
            1
            for p in pods
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        namespaces = sorted({p["metadata"]["namespace"] for p in pods})
        picks = [namespaces[(i * 7919) % len(namespaces)] for i in range(samples)]
        it = iter(picks)
        results["list_pods_namespace"] = _percentiles(
            _timed(lambda: core.list_namespaced_pod(next(it)), samples)
        )
        results["list_pods_all_namespaces_raw"] = _percentiles(
            _timed(
                lambda: _raw_json(core.list_pod_for_all_namespaces(_preload_content=False)),
                max(3, samples // 4),
            )
        )
        results["list_pods_all_namespaces_models"] = _percentiles(
            _timed(core.list_pod_for_all_namespaces, 1)
        )
        with httpx.Client(timeout=30) as http:
            fetches = _timed(lambda: http.get(sandbox.metrics_url).raise_for_status(), samples)
            page = http.get(sandbox.metrics_url).text
        results["metrics_fetch"] = _percentiles(fetches)
        render = _metric(page, "sandbox_metrics_render_seconds")
        results["metrics_render_ms"] = None if render is None else round(render * 1000, 2)
        results["metrics_bytes"] = len(page.encode())
        results["metrics_series"] = sum(1 for line in page.splitlines() if not line.startswith("#"))
        stats = sandbox.stats()
        results["api_requests"] = stats["total"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="large")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--json", "--out", dest="out", type=Path, default=None)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox's `with` stops it (exit status 143).
    with sigterm_raises():
        results = run(args.scenario, args.samples, args.ready_timeout)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
