"""The ops listener (``--metrics-addr``): /metrics, the cluster page and its JSON feed.

It is a separate aiohttp server, not a route of the Docker API: scrapes and browsers
never share a listener, or a code path, with proxied Docker traffic.

    GET /metrics            Prometheus text format
    GET /                   the cluster page (static files under /static/)
    GET /api/cluster        one page of the cluster as JSON (?page=&per_page=&q=&state=)
    GET /api/stream         Server-Sent Events: the snapshot version, whenever it moves
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from shoal.ops.metrics import Metrics
from shoal.ops.page import PageQuery, render_page
from shoal.ops.snapshot import SnapshotCache

__all__ = ["OpsServer"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: How often a stream looks for a new snapshot version (the snapshot itself is cached).
STREAM_INTERVAL = 0.5
#: A comment line this often keeps idle streams open through proxies (and finds gone clients).
KEEPALIVE = 15.0
#: Rendered pages kept per snapshot version (distinct queries open at once).
PAGE_CACHE_SIZE = 64
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate"}


class OpsServer:
    """Serves the metrics and the page on its own address until `close()`."""

    def __init__(
        self,
        metrics: Metrics,
        snapshots: SnapshotCache,
        host: str,
        port: int,
        stream_interval: float = STREAM_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.snapshots = snapshots
        self.host = host
        self.port = port
        self._stream_interval = stream_interval
        self._closing = asyncio.Event()
        self._pages: dict[PageQuery, bytes] = {}
        self._pages_version = -1
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/cluster", self._cluster)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_static("/static/", STATIC)
        return app

    async def start(self) -> None:
        """Bind and serve; OSError if the address is taken."""
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])
        log.info(
            "Serving metrics and the cluster page",
            extra={"fields": {"addr": f"{self.host}:{self.port}"}},
        )

    async def close(self) -> None:
        """Ends open streams, then stops the listener."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        # The snapshot is taken here, on the loop; the text (about 100 ms at a thousand
        # nodes) is written in a thread from that immutable snapshot.
        self.snapshots.get()
        body = await asyncio.to_thread(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)

    async def _cluster(self, request: web.Request) -> web.Response:
        try:
            query = PageQuery.parse(request.query)
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        snap = self.snapshots.get()
        version = self.snapshots.version
        if self._pages_version != version:
            self._pages.clear()
            self._pages_version = version
        body = self._pages.get(query)
        if body is None:
            body = render_page(snap, version, query)
            if len(self._pages) >= PAGE_CACHE_SIZE:
                self._pages.pop(next(iter(self._pages)))
            self._pages[query] = body
        return web.Response(body=body, content_type="application/json", headers=NO_CACHE)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={**NO_CACHE, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        sent = -1
        last_write = loop.time()
        with contextlib.suppress(ConnectionError):
            while not self._closing.is_set():
                self.snapshots.get()
                version = self.snapshots.version
                if version != sent:
                    await resp.write(f"event: version\ndata: {version}\n\n".encode())
                    sent, last_write = version, loop.time()
                elif loop.time() - last_write >= KEEPALIVE:
                    await resp.write(b": keepalive\n\n")
                    last_write = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._stream_interval)
        return resp
