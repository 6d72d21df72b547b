"""Latency of the Docker API through shoal vs. straight to the engine, in one run.

Starts a one-node sandbox (a real dockerd) and `shoal manage` over it, then sends the
same sequential requests both ways and prints p50/p99 and the shoal/direct ratio.

    .venv/bin/python bench/bench_api.py [--requests 300] [--containers 20]

With `--metrics`, a second manager runs over the same engine with `--metrics-addr`,
scraped once a second (/metrics and the page's JSON) during the run, and the proxied
cases are timed through both managers in alternating rounds: it prints the ratio
with/without metrics. `--manager-arg` passes extra flags to the manager(s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.manager import Manager, free_port

from shoal.sandbox import Sandbox


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure(count: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(min(20, count)):  # warm the connection pools
        await call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def main(args: argparse.Namespace) -> None:
    async with Sandbox(1, tag="bench") as sandbox:
        node = sandbox.nodes[0]
        port = free_port()
        extra = list(args.manager_arg)
        manager = Manager(["manage", "-H", f"127.0.0.1:{port}", *extra, sandbox.discovery], port)
        await manager.start()
        try:
            await manager.wait_nodes(1)
            if args.metrics:
                await with_metrics(args, sandbox.discovery, extra, manager.url, f"http://{node.addr}")
            else:
                await run(args, f"http://{node.addr}", manager.url)
        finally:
            await manager.stop()


async def with_metrics(
    args: argparse.Namespace, discovery: str, extra: list[str], plain: str, direct: str
) -> None:
    """The proxied cases through a plain manager and one serving metrics, rounds alternating."""
    port, ops_port = free_port(), free_port()
    manager = Manager(
        ["manage", "-H", f"127.0.0.1:{port}", "--metrics-addr", f"127.0.0.1:{ops_port}",
         *extra, discovery],
        port,
    )
    await manager.start()
    try:
        await manager.wait_nodes(1)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:
            ids = []
            for i in range(args.containers):
                async with session.post(
                    direct + f"/v1.41/containers/create?name=bench-m-{i}",
                    json={"Image": "busybox", "Cmd": ["sleep", "600"]},
                ) as resp:
                    ids.append((await resp.json())["Id"])
                async with session.post(direct + f"/v1.41/containers/{ids[-1]}/start") as resp:
                    await resp.read()
            await asyncio.sleep(2)  # let both managers' caches settle
            scraper = asyncio.create_task(scrape(session, f"http://127.0.0.1:{ops_port}"))
            try:
                await compare(args, session, plain, manager.url)
            finally:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
                for cid in ids:
                    async with session.delete(direct + f"/v1.41/containers/{cid}?force=1") as r:
                        await r.read()
    finally:
        await manager.stop()


async def scrape(session: aiohttp.ClientSession, ops: str) -> None:
    """What Prometheus and an open cluster page do, once a second."""
    while True:
        for path in ("/metrics", "/api/cluster"):
            async with session.get(ops + path) as resp:
                await resp.read()
                assert resp.status == 200, (path, resp.status)
        await asyncio.sleep(1)


async def compare(
    args: argparse.Namespace, session: aiohttp.ClientSession, plain: str, metrics: str
) -> None:
    async def get(url: str) -> None:
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)

    async with session.get(plain + "/v1.41/containers/json?all=1") as resp:
        listed = await resp.json()
    target = listed[0]["Id"] if listed else None
    cases = [
        ("GET /containers/json", "/v1.41/containers/json"),
        ("GET /images/{name}/json (proxied)", "/v1.41/images/busybox/json"),
        ("GET /version", "/v1.41/version"),
    ]
    if target:
        cases.append(("GET /containers/{id}/json", f"/v1.41/containers/{target}/json"))
    rounds = 5
    per_round = max(1, args.requests // rounds)
    print(f"{args.requests} sequential requests per case and manager, {rounds} alternating "
          "rounds; /metrics and /api/cluster scraped every second; milliseconds")
    print(f"{'case':40} {'plain p50':>10} {'p99':>7} {'metrics p50':>11} {'p99':>7} "
          f"{'ratio p50':>9} {'ratio p99':>9}")
    for label, path in cases:
        a: list[float] = []
        b: list[float] = []
        for _ in range(rounds):
            a += await measure(per_round, lambda p=path: get(plain + p))
            b += await measure(per_round, lambda p=path: get(metrics + p))
        report(label, a, b)


async def run(args: argparse.Namespace, direct: str, shoal: str) -> None:
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> None:
            async with session.get(url) as resp:
                await resp.read()
                assert resp.status == 200, (url, resp.status)

        ids = []
        for i in range(args.containers):
            async with session.post(
                direct + f"/v1.41/containers/create?name=bench-{i}",
                json={"Image": "busybox", "Cmd": ["sleep", "600"]},
            ) as resp:
                ids.append((await resp.json())["Id"])
            async with session.post(direct + f"/v1.41/containers/{ids[-1]}/start") as resp:
                await resp.read()
        await asyncio.sleep(2)  # let shoal's event-fed cache settle
        target = ids[0]

        cases: list[tuple[str, str]] = [
            ("GET /containers/json", "/v1.41/containers/json"),
            ("GET /containers/{id}/json", f"/v1.41/containers/{target}/json"),
            ("GET /images/{name}/json (proxied)", "/v1.41/images/busybox/json"),
            (
                "GET /containers/{id}/logs (proxied)",
                f"/v1.41/containers/{target}/logs?stdout=1&tail=1",
            ),
        ]
        print(f"engine: 1 dockerd 20.10 (loopback TCP); {args.containers} running containers; "
              f"{args.requests} sequential requests per case; milliseconds")
        print(f"{'case':40} {'direct p50':>10} {'p99':>7} {'shoal p50':>10} {'p99':>7} "
              f"{'ratio p50':>9} {'ratio p99':>9}")
        for label, path in cases:
            d = await measure(args.requests, lambda p=path: get(direct + p))
            s = await measure(args.requests, lambda p=path: get(shoal + p))
            report(label, d, s)

        counter = iter(range(10**6))
        created: list[tuple[str, str]] = []

        async def create_start(base: str) -> None:
            name = f"bench-cs-{next(counter)}"
            async with session.post(
                base + f"/v1.41/containers/create?name={name}",
                json={"Image": "busybox", "Cmd": ["true"]},
            ) as resp:
                cid = (await resp.json())["Id"]
                assert resp.status == 201
            async with session.post(base + f"/v1.41/containers/{cid}/start") as resp:
                await resp.read()
                assert resp.status == 204, resp.status
            created.append((base, cid))

        n = max(10, args.requests // 10)
        d = await measure(n, lambda: create_start(direct))
        s = await measure(n, lambda: create_start(shoal))
        report("POST /containers/create + start", d, s)
        for _, cid in created:
            async with session.delete(direct + f"/v1.41/containers/{cid}?force=1") as resp:
                await resp.read()
        for cid in ids:
            async with session.delete(direct + f"/v1.41/containers/{cid}?force=1") as resp:
                await resp.read()


def report(label: str, direct: list[float], shoal: list[float]) -> None:
    dp50, dp99 = statistics.median(direct), percentile(direct, 99)
    sp50, sp99 = statistics.median(shoal), percentile(shoal, 99)
    print(f"{label:40} {dp50:10.2f} {dp99:7.2f} {sp50:10.2f} {sp99:7.2f} "
          f"{sp50 / dp50:8.2f}x {sp99 / dp99:8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--metrics", action="store_true",
                        help="compare a manager with --metrics-addr against one without")
    parser.add_argument("--manager-arg", action="append", default=[], metavar="FLAG",
                        help="extra `shoal manage` flag (repeatable; use --manager-arg=--x)")
    uvloop.run(main(parser.parse_args()))
