"""Run a real Prometheus server with a generated config that scrapes given targets every second."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from istio_upgrade.devenv import binaries, processes
from istio_upgrade.devenv.ports import free_port
from istio_upgrade.devenv.prometheus_web import WebConfig


class PrometheusStartError(RuntimeError):
    """Prometheus exited or did not become ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``/metrics`` endpoint to scrape."""

    address: str
    """``host:port`` of the endpoint."""
    job: str = "sandbox"
    """``job`` label of the series; one scrape job per distinct value."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra target labels (for example ``cluster``)."""
    metrics_path: str = "/metrics"


def render_config(targets: Sequence[ScrapeTarget], *, interval_s: float = 1.0) -> dict[str, Any]:
    """The Prometheus config: one job per target job name, scraping every ``interval_s``.

    The rule of thumb of the gate (windows of a few seconds in the demo) needs samples at
    least every second, so the default interval is 1 s for both scraping and rule evaluation.
    """
    interval = f"{interval_s:g}s"
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for target in targets:
        group: dict[str, Any] = {"targets": [target.address]}
        if target.labels:
            group["labels"] = dict(target.labels)
        jobs.setdefault((target.job, target.metrics_path), []).append(group)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": path,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": groups,
            }
            for (job, path), groups in jobs.items()
        ],
    }


class PrometheusServer:
    """A Prometheus child process with its own config, TSDB directory and port.

    Use as ``async with PrometheusServer(targets) as prom: prom.url`` or call
    :meth:`start` / :meth:`stop`; the temporary directory is removed on stop.
    """

    def __init__(
        self,
        targets: Sequence[ScrapeTarget] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        web: WebConfig | None = None,
    ) -> None:
        """Prepare a server; nothing runs until :meth:`start`.

        Args:
            targets: Endpoints to scrape.
            host: Listen address.
            port: Listen port; default any free port.
            interval_s: Scrape and rule evaluation interval.
            rule_files: Rule files to load (copied into the server's directory).
            extra_scrape_configs: Whole ``scrape_configs`` entries appended as given.
            web: Basic auth and TLS of the HTTP API (``--web.config.file``); the server's own
                requests (readiness, reload, :meth:`query`) pass them.
        """
        self.targets = list(targets)
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.rule_files = list(rule_files)
        self.extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self.web = web
        self._dir: Path | None = None
        # A plain Popen (not asyncio's) so stop_sync() works outside any event loop.
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:9090`` (https with ``web.tls``)."""
        if self.port is None:
            raise RuntimeError("Prometheus is not started")
        scheme = "https" if self.web is not None and self.web.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _client(self, timeout: float) -> httpx.AsyncClient:
        """A client passing the web config's basic auth and trusting its CA."""
        kwargs = self.web.client_kwargs() if self.web is not None else {}
        return httpx.AsyncClient(timeout=timeout, **kwargs)

    @property
    def directory(self) -> Path:
        """The server's working directory (config, TSDB, log)."""
        if self._dir is None:
            raise RuntimeError("Prometheus is not started")
        return self._dir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> Path:
        config = render_config(self.targets, interval_s=self.interval_s)
        config["scrape_configs"].extend(self.extra_scrape_configs)
        if self.rule_files:
            copied = []
            for i, rule_file in enumerate(self.rule_files):
                dest = self.directory / f"rules-{i}.yaml"
                shutil.copyfile(rule_file, dest)
                copied.append(str(dest))
            config["rule_files"] = copied
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        """Start the process and wait until ``/-/ready`` answers 200.

        Raises:
            binaries.MissingBinaryError: Prometheus is not installed.
            PrometheusStartError: It exited early or was not ready in time.
        """
        self._spawn()
        try:
            await self._wait_ready(timeout_s)
        except BaseException:
            await self.stop()
            raise
        return self

    def _spawn(self) -> None:
        binary = binaries.prometheus()
        self._dir = Path(tempfile.mkdtemp(prefix="istio-upgrade-prometheus-"))
        if self.port is None:
            self.port = free_port(self.host)
        config = self._write_config()
        web_flags: list[str] = []
        if self.web is not None:
            web_file = self._dir / "web.yml"
            web_file.write_text(yaml.safe_dump(self.web.render(), sort_keys=False))
            web_flags.append(f"--web.config.file={web_file}")
        self._log = (self._dir / "prometheus.log").open("wb")
        # Stops with us even on SIGKILL (PR_SET_PDEATHSIG), in its own session so a Ctrl-C in
        # the terminal reaches only us and we stop it in order: see devenv.processes.
        self._proc = processes.spawn(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                *web_flags,
            ],
            log=self._log,
        )

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with self._client(2.0) as http:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise PrometheusStartError(f"Prometheus exited early:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"{self.url}/-/ready")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise PrometheusStartError(f"Prometheus not ready after {timeout_s:g}s:\n{self.log_tail()}")

    async def set_targets(self, targets: Sequence[ScrapeTarget]) -> None:
        """Replace the scrape targets and reload the running server (``POST /-/reload``)."""
        self.targets = list(targets)
        self._write_config()
        async with self._client(10.0) as http:
            response = await http.post(f"{self.url}/-/reload")
            response.raise_for_status()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns the ``data.result`` vector (for checks in tests and the demo)."""
        async with self._client(10.0) as http:
            response = await http.get(f"{self.url}/api/v1/query", params={"query": promql})
            response.raise_for_status()
            body = response.json()
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for_series(self, promql: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``promql`` returns at least one series (the first scrapes have landed).

        Raises:
            TimeoutError: Nothing came back within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                result = await self.query(promql)
                if result:
                    return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {promql!r} after {timeout_s:g}s")
            await asyncio.sleep(0.25)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        if self._dir is None:
            return ""
        path = self._dir / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        await asyncio.to_thread(self.stop_sync, timeout_s)

    def stop_sync(self, timeout_s: float = 10.0) -> None:
        """:meth:`stop` for callers without an event loop (fixture teardown, atexit)."""
        proc, self._proc = self._proc, None
        processes.stop(proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> PrometheusServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
