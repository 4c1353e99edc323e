"""The mesh of one sandbox: traffic counters, control-plane gauges and their ``/metrics`` page."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from aiohttp import web

from istio_sandbox.cluster import Cluster
from istio_sandbox.istio.names import ISTIO_NAMESPACE, LABEL_REV, image_tag
from istio_sandbox.mesh.exposition import (
    CONTENT_TYPE,
    render_family,
    render_requests,
    render_tcp,
)
from istio_sandbox.mesh.pods import PodIndex
from istio_sandbox.mesh.traffic import TrafficModel
from istio_sandbox.resources import BY_KEY
from istio_sandbox.scenario import Scenario

DEPLOYMENTS = BY_KEY["apps/deployments"]
SERVICES = BY_KEY["/services"]


class Mesh:
    """Advances traffic every ``tick_s`` of wall-clock time and serves the exposition.

    The page is rendered once per tick and cached, so a scrape costs a memory copy however
    large the cluster is.
    """

    def __init__(self, cluster: Cluster, scenario: Scenario, *, tick_s: float = 0.5) -> None:
        """Index the cluster's pods and prepare the traffic model (nothing runs yet).

        Args:
            cluster: The sandbox's cluster; its pods and faults drive the traffic.
            scenario: Workloads, their request rates and call edges.
            tick_s: Wall-clock period of :meth:`advance` while started.
        """
        self.cluster = cluster
        self.pods = PodIndex(cluster.store)
        self.traffic = TrafficModel(cluster, scenario, self.pods)
        self.tick_s = tick_s
        self._page = b""
        self._versions_seen: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self.render_seconds = 0.0
        """Duration of the last render, for benchmarks."""
        self.refresh()

    def control_plane(self) -> dict[str, str]:
        """Installed revisions (istiod Deployments in istio-system) → their Istio version."""
        out: dict[str, str] = {}
        for dep in self.cluster.store.list(DEPLOYMENTS, ISTIO_NAMESPACE, copy_objects=False):
            labels = dep["metadata"].get("labels") or {}
            revision = labels.get(LABEL_REV)
            if labels.get("app") != "istiod" or not revision:
                continue
            containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
            version = next(
                (
                    image_tag(str(c.get("image", "")))
                    for c in containers or []
                    if c.get("name") == "discovery"
                ),
                "",
            )
            out[revision] = version
        return out

    def xds_revision(self, address: str) -> str | None:
        """The revision behind an xDS address ``<service>.<namespace>.svc:15012``: the pods its
        Service selects (``istio.io/rev``, or ``istio: pilot`` for a revisionless istiod)."""
        host = address.rsplit(":", 1)[0]
        parts = host.split(".")
        if len(parts) < 2:
            return None
        svc = self.cluster.store.try_get(SERVICES, parts[1], parts[0])
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if LABEL_REV in selector:
            return str(selector[LABEL_REV])
        if selector.get("istio") == "pilot":
            return "default"
        return None

    def connections(self) -> Counter[tuple[str, str]]:
        """Proxies connected to each istiod by (revision, version): Ready injected pods and
        gateways (their ``istio.io/rev`` annotation) plus Ready ztunnels (their
        ``XDS_ADDRESS``)."""
        out: Counter[tuple[str, str]] = Counter(self.pods.proxies)
        for (address, version), n in self.pods.ztunnels.items():
            revision = self.xds_revision(address)
            if revision is not None:
                out[(revision, version)] += n
        return out

    def _control_plane_lines(self) -> list[str]:
        revisions = self.control_plane()
        connected = self.connections()
        xds: list[tuple[dict[str, str], float]] = []
        for revision, own_version in sorted(revisions.items()):
            seen = self._versions_seen.setdefault(revision, set())
            if own_version:
                seen.add(own_version)
            seen.update(v for r, v in connected if r == revision)
            # Versions once connected stay exposed at 0, so the drain signal reaches 0
            # instead of disappearing.
            for version in sorted(seen):
                value = connected.get((revision, version), 0)
                xds.append(({"revision": revision, "version": version}, value))
        for gone in set(self._versions_seen) - set(revisions):
            del self._versions_seen[gone]
        revs = sorted(revisions)
        success = getattr(self.cluster, "injection_successes", {})
        failure = getattr(self.cluster, "injection_failures", {})
        lines = render_family(
            "pilot_xds", "gauge", "Proxies connected to this istiod, by proxy version.", xds
        )
        lines += render_family(
            "pilot_total_xds_rejects",
            "counter",
            "Configuration pushes rejected by proxies.",
            [({"revision": r}, self.traffic.xds_rejects.get(r, 0)) for r in revs],
        )
        lines += render_family(
            "pilot_total_xds_internal_errors",
            "counter",
            "Internal errors while pushing configuration.",
            [({"revision": r}, 0) for r in revs],
        )
        lines += render_family(
            "sidecar_injection_success_total",
            "counter",
            "Pods the sidecar injector mutated.",
            [({"revision": r}, success.get(r, 0)) for r in sorted(set(revs) | set(success))],
        )
        lines += render_family(
            "sidecar_injection_failure_total",
            "counter",
            "Pod creations the sidecar injector refused or failed.",
            [({"revision": r}, failure.get(r, 0)) for r in sorted(set(revs) | set(failure))],
        )
        return lines

    def refresh(self) -> None:
        """Render the exposition page from the current counters."""
        started = time.perf_counter()
        lines = render_requests(self.traffic.requests) + render_tcp(self.traffic.tcp)
        lines += self._control_plane_lines()
        # The previous render's duration: benchmarks read it from the page they scrape.
        lines += render_family(
            "sandbox_metrics_render_seconds",
            "gauge",
            "Time the sandbox took to render this page the last time.",
            [({}, round(self.render_seconds, 6))],
        )
        self._page = ("\n".join(lines) + "\n").encode()
        self.render_seconds = time.perf_counter() - started

    def advance(self, dt: float) -> None:
        """Move traffic forward by ``dt`` seconds and re-render (tests call this directly)."""
        self.traffic.advance(dt)
        self.refresh()

    @property
    def page(self) -> bytes:
        """The last rendered exposition."""
        return self._page

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``."""
        return web.Response(body=self._page, headers={"Content-Type": CONTENT_TYPE})

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            self.advance(now - last)
            last = now

    def start(self) -> None:
        """Start advancing with wall-clock time on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mesh-traffic")

    async def stop(self) -> None:
        """Stop the timer (counters keep their values)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
