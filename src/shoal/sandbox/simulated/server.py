"""N simulated engines served by one aiohttp runner, one loopback port per engine.

The engine a request is for is the one owning the local port it arrived on, so a single
application and router serve every engine. Routes the simulator does not implement answer
501 and are counted (see `GET /_sim/stats` and `SimServer.unknown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shoal.sandbox.simulated.model import SimEngine, SimError, parse_time_nano
from shoal.sandbox.simulated.wire import (
    HEADERS,
    container_matches,
    empty,
    encode,
    event_matches,
    flag,
    json_body,
    parse_filters,
    reply,
)

LOW_PORT = 20000
HIGH_PORT = 32767
VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")

Handler = Callable[[web.Request, SimEngine, list[str]], Awaitable[web.StreamResponse]]


def raise_nofile(wanted: int) -> None:
    """Serving thousands of ports needs thousands of descriptors: raise the soft limit, and
    the hard one too where allowed (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(target, soft), hard))


def bind_range(n: int, host: str = "127.0.0.1", low: int = LOW_PORT,
               high: int = HIGH_PORT) -> list[socket.socket]:
    """N listening sockets on consecutive ports, so discovery is one `[A:B]` range."""
    base = low
    while base + n - 1 <= high:
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(128)
                sock.setblocking(False)
            return sockets
        except OSError:
            failed = base + len(sockets) - 1
            for sock in sockets:
                sock.close()
            base = failed + 1
    raise OSError(f"no {n} consecutive free ports between {low} and {high}")


class SimServer:
    """The HTTP side: binds the ports, routes each request to its engine, counts gaps."""

    def __init__(self, engines: list[SimEngine], host: str = "127.0.0.1",
                 low_port: int = LOW_PORT) -> None:
        self.engines = engines
        self.host = host
        self.low_port = low_port
        self.by_port: dict[int, SimEngine] = {}
        self.ports: list[int] = []
        self.unknown: Counter[str] = Counter()
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "_ping"): self._ping, ("HEAD", "_ping"): self._ping,
            ("GET", "version"): self._version, ("GET", "info"): self._info,
            ("GET", "_sim/stats"): self._stats,
            ("GET", "containers/json"): self._containers,
            ("POST", "containers/create"): self._create,
            ("GET", "containers/*/json"): self._inspect,
            ("POST", "containers/*/start"): self._start,
            ("POST", "containers/*/stop"): self._stop,
            ("POST", "containers/*/kill"): self._kill,
            ("POST", "containers/*/restart"): self._restart,
            ("POST", "containers/*/pause"): self._pause,
            ("POST", "containers/*/unpause"): self._unpause,
            ("POST", "containers/*/wait"): self._wait,
            ("POST", "containers/*/rename"): self._rename,
            ("GET", "containers/*/logs"): self._logs,
            ("DELETE", "containers/*"): self._remove,
            ("GET", "images/json"): self._images,
            ("POST", "images/create"): self._pull,
            ("GET", "images/**/json"): self._image,
            ("GET", "networks"): self._networks,
            ("POST", "networks/create"): self._network_create,
            ("GET", "networks/*"): self._network,
            ("DELETE", "networks/*"): self._network_remove,
            ("GET", "volumes"): self._volumes,
            ("POST", "volumes/create"): self._volume_create,
            ("GET", "volumes/*"): self._volume,
            ("DELETE", "volumes/*"): self._volume_remove,
            ("GET", "events"): self._events,
        }

    @property
    def discovery(self) -> str:
        first, last = self.ports[0], self.ports[-1]
        if first == last:
            return f"nodes://{self.host}:{first}"
        return f"nodes://{self.host}:[{first}:{last}]"

    async def start(self) -> None:
        raise_nofile(len(self.engines) * 12 + 1024)
        sockets = bind_range(len(self.engines), self.host, self.low_port)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # Idle keep-alive connections stay open, as on dockerd (no idle timeout there):
        # a manager's pooled connections are not re-dialled between its refreshes.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                                     handle_signals=False, keepalive_timeout=3600.0)
        await self._runner.setup()
        for sock, engine in zip(sockets, self.engines, strict=True):
            port = int(sock.getsockname()[1])
            self.ports.append(port)
            self.by_port[port] = engine
            await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stats(self) -> dict[str, Any]:
        return {"engines": len(self.engines), "requests": self.requests,
                "unknown": dict(self.unknown)}

    # -- dispatch ------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        engine = self.by_port.get(int(sockname[1])) if sockname else None
        if engine is None:
            return reply({"message": "no simulated engine on this port"}, 404)
        path = VERSION_PREFIX.sub("", request.path, count=1)
        parts = [p for p in path.split("/") if p]
        handler, args, pattern = self._match(request.method, parts)
        if handler is None:
            self.unknown[f"{request.method} /{pattern}"] += 1
            return reply({"message": f"page not found in simulated engine: "
                                     f"{request.method} {path}"}, 501)
        try:
            return await handler(request, engine, args)
        except SimError as exc:
            return reply({"message": exc.message}, exc.status)

    def _match(self, method: str, parts: list[str]) -> tuple[Handler | None, list[str], str]:
        """The handler, its path arguments, and the route shape (for the gap counts)."""
        shapes: list[tuple[str, list[str]]] = [("/".join(parts), [])]
        if len(parts) == 2:
            shapes.append((f"{parts[0]}/*", [parts[1]]))
        if len(parts) == 3:
            shapes.append((f"{parts[0]}/*/{parts[2]}", [parts[1]]))
        if len(parts) >= 3 and parts[-1] == "json":
            shapes.append((f"{parts[0]}/**/json", ["/".join(parts[1:-1])]))
        for shape, args in shapes:
            handler = self._routes.get((method, shape))
            if handler is not None:
                return handler, args, shape
        return None, [], shapes[-1][0] if len(shapes) > 1 else shapes[0][0]

    # -- system ----------------------------------------------------------------------
    async def _ping(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        return web.Response(text="OK" if request.method == "GET" else "",
                            headers={**HEADERS, "Cache-Control": "no-cache, no-store, "
                                     "must-revalidate", "Pragma": "no-cache"})

    async def _version(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        return reply(engine.version())

    async def _info(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        return reply(engine.info())

    async def _stats(self, request: web.Request, engine: SimEngine,
                     args: list[str]) -> web.StreamResponse:
        return reply(self.stats())

    # -- containers --------------------------------------------------------------------
    async def _containers(self, request: web.Request, engine: SimEngine,
                          args: list[str]) -> web.StreamResponse:
        q = request.query
        filters = parse_filters(q.get("filters", ""))
        show_all = flag(q, "all")
        now = time.time()
        chosen = [c for c in engine.list_containers()
                  if (show_all or c.running or "status" in filters)
                  and container_matches(c.id, c.name, c.status, c.labels, filters)]
        chosen.sort(key=lambda c: c.created, reverse=True)
        limit = int(q.get("limit") or -1) if (q.get("limit") or "").lstrip("-").isdigit() else -1
        if limit > 0:
            chosen = chosen[:limit]
        size = flag(q, "size")
        return reply([engine.summary(c, now, size) for c in chosen])

    async def _create(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        body = await json_body(request)
        c = engine.create(request.query.get("name"), body)
        return reply({"Id": c.id, "Warnings": []}, 201)

    async def _inspect(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        return reply(engine.inspect(engine.find(args[0])))

    async def _start(self, request: web.Request, engine: SimEngine,
                     args: list[str]) -> web.StreamResponse:
        return empty(204 if engine.start(args[0]) else 304)

    async def _stop(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        return empty(204 if engine.stop(args[0]) else 304)

    async def _kill(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        engine.kill(args[0], request.query.get("signal") or "KILL")
        return empty()

    async def _restart(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        engine.restart(args[0])
        return empty()

    async def _pause(self, request: web.Request, engine: SimEngine,
                     args: list[str]) -> web.StreamResponse:
        engine.pause(args[0])
        return empty()

    async def _unpause(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        engine.unpause(args[0])
        return empty()

    async def _rename(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        engine.rename(args[0], request.query.get("name", ""))
        return empty()

    async def _remove(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        engine.remove(args[0], flag(request.query, "force"), flag(request.query, "v"))
        return empty()

    async def _wait(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        """Headers at once, the body when the container exits, as dockerd streams it."""
        c = engine.find(args[0])
        condition = request.query.get("condition") or "not-running"
        resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "application/json"})
        await resp.prepare(request)
        if c.running or condition in ("next-exit", "removed"):
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            def exited(code: int) -> None:
                if not done.done():
                    done.set_result(code)

            engine.waiters.setdefault(c.id, []).append((condition, exited))
            code = await done
        else:
            code = c.exit_code
        with contextlib.suppress(ConnectionResetError):  # the client gave up waiting
            await resp.write(encode({"Error": None, "StatusCode": code}))
            await resp.write_eof()
        return resp

    async def _logs(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        c = engine.find(args[0])
        lines = [f"{c.name}: simulated output line {i}\n".encode() for i in range(3)]
        if flag(request.query, "timestamps"):
            lines = [b"2024-01-01T00:00:00.000000000Z " + line for line in lines]
        if c.tty:
            body = b"".join(lines)
            kind = "application/vnd.docker.raw-stream"
        else:
            body = b"".join(struct.pack(">BxxxL", 1, len(line)) + line for line in lines)
            kind = "application/vnd.docker.multiplexed-stream"
        if not flag(request.query, "stdout"):
            body = b""
        return web.Response(body=body, headers={**HEADERS, "Content-Type": kind})

    # -- images, networks, volumes ---------------------------------------------------------
    async def _images(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        return reply([engine.image_summary(i) for i in engine.images.values()])

    async def _image(self, request: web.Request, engine: SimEngine,
                     args: list[str]) -> web.StreamResponse:
        image = engine.find_image(args[0])
        if image is None:
            raise SimError(404, f"No such image: {args[0]}")
        return reply(engine.image_inspect(image))

    async def _pull(self, request: web.Request, engine: SimEngine,
                    args: list[str]) -> web.StreamResponse:
        repo = request.query.get("fromImage", "")
        if not repo:
            raise SimError(501, "import from a source is not simulated")
        tag = request.query.get("tag", "")
        if not tag and ":" in repo.rsplit("/", 1)[-1]:
            repo, _, tag = repo.rpartition(":")
        messages = engine.pull(repo, tag or "latest")
        resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "application/json"})
        await resp.prepare(request)
        for message in messages:
            await resp.write(encode(message).replace(b"\n", b"\r\n"))
        await resp.write_eof()
        return resp

    async def _networks(self, request: web.Request, engine: SimEngine,
                        args: list[str]) -> web.StreamResponse:
        return reply([n.document() for n in engine.networks.values()])

    async def _network(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        return reply(engine.find_network(args[0]).document())

    async def _network_create(self, request: web.Request, engine: SimEngine,
                              args: list[str]) -> web.StreamResponse:
        net = engine.create_network(await json_body(request))
        return reply({"Id": net.id, "Warning": ""}, 201)

    async def _network_remove(self, request: web.Request, engine: SimEngine,
                              args: list[str]) -> web.StreamResponse:
        engine.remove_network(args[0])
        return empty()

    async def _volumes(self, request: web.Request, engine: SimEngine,
                       args: list[str]) -> web.StreamResponse:
        return reply({"Volumes": [v.document() for v in engine.volumes.values()],
                      "Warnings": None})

    async def _volume(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        volume = engine.volumes.get(args[0])
        if volume is None:
            raise SimError(404, f"get {args[0]}: no such volume")
        return reply(volume.document())

    async def _volume_create(self, request: web.Request, engine: SimEngine,
                             args: list[str]) -> web.StreamResponse:
        return reply(engine.create_volume(await json_body(request)).document(), 201)

    async def _volume_remove(self, request: web.Request, engine: SimEngine,
                             args: list[str]) -> web.StreamResponse:
        engine.remove_volume(args[0], flag(request.query, "force"))
        return empty()

    # -- events ----------------------------------------------------------------------------
    async def _events(self, request: web.Request, engine: SimEngine,
                      args: list[str]) -> web.StreamResponse:
        """Buffered events from `since`, then live ones, until `until` (if given) passes."""
        q = request.query
        replay = bool(q.get("since"))
        since = parse_time_nano(q.get("since", ""))
        until = parse_time_nano(q.get("until", ""))
        filters = parse_filters(q.get("filters", ""))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4096)

        def listen(event: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

        engine.listeners.add(listen)  # before the replay, so nothing falls in between
        try:
            resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "application/json"})
            await resp.prepare(request)
            last = 0
            if replay:
                for event in engine.history(since, until):
                    last = max(last, int(event["timeNano"]))
                    if event_matches(event, filters):
                        await resp.write(encode(event))
            while True:
                timeout = None
                if until:
                    timeout = (until - time.time_ns()) / 1e9
                    if timeout <= 0:
                        break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                nano = int(event["timeNano"])
                if nano <= last or (until and nano > until):
                    continue
                if event_matches(event, filters):
                    await resp.write(encode(event))
            await resp.write_eof()
            return resp
        finally:
            engine.listeners.discard(listen)
