"""What counting costs on the request path: the primary handler with and without telemetry.

Usage: python bench/bench_telemetry.py [--requests 20000] [--rounds 5]

Runs the real `PrimaryHandler` in-process (no sockets, no engine) on an inspect of a
missing container (route match, cluster lookup, error answer) and on `/_ping`, once
with the no-op default and once counting into Prometheus collectors, in alternating
rounds; prints microseconds per request (best round) and the difference. The proxied
path end to end is `bench_api.py --metrics`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from shoal.api.http import make_request
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.context import ApiContext
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.ops.metrics import Metrics
from shoal.ops.telemetry import PrometheusTelemetry
from shoal.scheduler.scheduler import Scheduler
from shoal.telemetry import NO_TELEMETRY

CASES = (("GET /containers/{name}/json (404)", "/v1.41/containers/abc/json"),
         ("GET /_ping", "/_ping"))


async def per_request(handler: PrimaryHandler, target: str, count: int) -> float:
    requests = [make_request("GET", target) for _ in range(count)]
    start = time.perf_counter()
    for request in requests:
        await handler(request)
    return (time.perf_counter() - start) / count * 1e6


async def main(args: argparse.Namespace) -> None:
    cluster = Cluster(EngineSettings(), Scheduler(), EventBus())
    ctx = ApiContext(cluster)
    plain = PrimaryHandler(ctx, NO_TELEMETRY)
    counted = PrimaryHandler(ctx, PrometheusTelemetry(Metrics()))
    print(f"{args.requests} requests per round, {args.rounds} alternating rounds; "
          "microseconds per request, best round")
    print(f"{'case':36} {'no-op':>8} {'prometheus':>11} {'cost':>7}")
    for label, target in CASES:
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.rounds):
            a.append(await per_request(plain, target, args.requests))
            b.append(await per_request(counted, target, args.requests))
        print(f"{label:36} {min(a):8.2f} {min(b):11.2f} {min(b) - min(a):7.2f}")
    await cluster.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
