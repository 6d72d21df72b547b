"""Micro-benchmark of the HTTP server: sequential GET /_ping over one keep-alive connection.

Prints requests/s, p50 and p99 for shoal's server (Dispatcher + Router) and, as a floor,
for a bare asyncio server that answers a canned response without parsing anything.
Client and server share one uvloop loop on 127.0.0.1. Usage:

    .venv/bin/python bench/bench_http_server.py [--count 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import uvloop

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import Request, Response
from shoal.api.router import Router
from shoal.api.server import APIServer

REQUEST = b"GET /v1.41/_ping HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n"
CANNED = (
    b"HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 2\r\nApi-Version: 1.40\r\n\r\nOK"
)


async def ping(request: Request, params: dict[str, str]) -> Response:
    return Response(200, b"OK", [("Api-Version", "1.40")], "text/plain; charset=utf-8")


def build_router() -> Router:
    router = Router()
    # A realistic table: ~80 routes, the ping among them.
    for seg in ("containers", "images", "networks", "volumes", "exec", "plugins", "system"):
        for suffix in ("json", "{name:.*}/json", "{name:.*}/start", "{name:.*}/stop"):
            for method in ("GET", "POST"):
                router.add(method, f"/{seg}/{suffix}", ping)
    router.add("GET", "/_ping", ping)
    router.add("GET", "/info", ping)
    router.add("GET", "/version", ping)
    return router


async def client(port: int, count: int) -> list[int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    timings: list[int] = []
    clock = time.perf_counter_ns
    try:
        for _ in range(count):
            start = clock()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            i = head.find(b"Content-Length: ")
            length = int(head[i + 16 : head.find(b"\r\n", i)])
            await reader.readexactly(length)
            timings.append(clock() - start)
    finally:
        writer.close()
    return timings


async def canned_server() -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(CANNED)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def report(name: str, timings: list[int], elapsed: float) -> None:
    ordered = sorted(timings)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[int(len(ordered) * 0.99)] / 1000
    mean = statistics.fmean(ordered) / 1000
    print(
        f"{name:<28} {len(timings) / elapsed:>9.0f} req/s   "
        f"p50 {p50:7.1f} us   p99 {p99:7.1f} us   mean {mean:7.1f} us"
    )


async def measure(name: str, port: int, count: int) -> None:
    await client(port, min(count, 1000))  # warm-up
    start = time.perf_counter()
    timings = await client(port, count)
    report(name, timings, time.perf_counter() - start)


async def main(count: int) -> None:
    raw, raw_port = await canned_server()
    server = APIServer(Dispatcher(build_router()), ["127.0.0.1:0"])
    await server.start()
    port = int(server.addresses[0].rsplit(":", 1)[1])
    runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("bare asyncio (floor)", lambda: measure("bare asyncio (floor)", raw_port, count)),
        ("shoal APIServer", lambda: measure("shoal APIServer", port, count)),
    ]
    try:
        print(f"{count} sequential keep-alive requests, uvloop, client in the same loop")
        for _, run in runs:
            await run()
    finally:
        await server.close()
        raw.close()
        await raw.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="requests per run (bounded)")
    args = parser.parse_args()
    uvloop.run(main(max(1, min(args.count, 1_000_000))))
