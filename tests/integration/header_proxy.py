"""A reverse proxy that lets a request through to Prometheus only with the expected headers.

Stands in for what production puts in front of Prometheus: Mimir/Cortex's tenant header
(``X-Scope-OrgID``) and a bearer token checked by a gateway (OpenShift's kube-rbac-proxy in
front of Thanos querier, a managed Prometheus). 401 without the right token, 403 without the
right tenant; every request seen is counted, so a test knows the proxy was on the path.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from istio_upgrade.devenv.ports import free_port


@dataclass
class HeaderProxy:
    upstream: str
    token: str
    org_id: str
    seen: Counter[str] = field(default_factory=Counter)
    """``ok`` / ``401`` / ``403`` → requests answered so."""
    upstream_headers: dict[str, str] = field(default_factory=dict)
    """What the proxy itself presents upstream (a Prometheus with basic auth)."""
    upstream_ssl: ssl.SSLContext | None = None
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.seen["401"] += 1
            return web.Response(
                status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Bearer"}
            )
        if request.headers.get("X-Scope-OrgID") != self.org_id:
            self.seen["403"] += 1
            return web.Response(status=403, text="no org id\n")
        self.seen["ok"] += 1
        assert self._session is not None
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.rel_url}",
            data=await request.read(),
            headers={
                "Content-Type": request.headers.get("Content-Type", "text/plain"),
                **self.upstream_headers,
            },
            ssl=self.upstream_ssl if self.upstream_ssl is not None else True,
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=body,
                content_type=upstream.content_type,
            )

    async def start(self) -> HeaderProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port("127.0.0.1")
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
