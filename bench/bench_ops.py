"""Cost of the ops endpoints on a synthetic cluster: one snapshot, one /metrics, one page.

Usage: python bench/bench_ops.py [--nodes 1000] [--containers 30000] [--runs 20]

Builds real Cluster/Engine objects (never started, no network) filled with cached
containers, then times a snapshot (taken once a second at most, whatever the number of
clients; engines whose containers did not change are reused), the Prometheus text of
every collector (written in a worker thread), and one page of the cluster's JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable

from shoal.cluster.client import EngineAddress, EngineClient
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import Container, EngineSpecs
from shoal.ops.metrics import Metrics
from shoal.ops.page import PageQuery, render_page
from shoal.ops.snapshot import ClusterReader
from shoal.scheduler.scheduler import Scheduler

IMAGES = ("nginx:1.25", "redis:7.0", "postgres:16", "busybox:latest", "python:3.11")


def make_cluster(rng: random.Random, nodes: int, containers: int) -> Cluster:
    settings = EngineSettings()
    cluster = Cluster(settings, Scheduler(["health"], "spread"), EventBus())
    for n in range(nodes):
        entry = f"10.{n // 62500}.{n // 250 % 250}.{n % 250 + 1}:2375"
        address = EngineAddress.parse(entry)
        engine = Engine(address, EngineClient(address, None), settings, cluster)
        engine.specs = EngineSpecs(daemon_id=f"D{n}", name=f"node-{n}", cpus=16, memory=64 << 30)
        engine.state = EngineState.UNHEALTHY if rng.random() < 0.01 else EngineState.HEALTHY
        cluster.engines[entry] = engine
        for i in range(containers // nodes):
            status = rng.choice(("running", "running", "running", "exited"))
            engine.restore_container(Container({
                "Id": f"{rng.getrandbits(256):064x}",
                "Name": f"/app-{n}-{i}",
                "Config": {"Image": rng.choice(IMAGES), "Labels": {}},
                "HostConfig": {"Memory": rng.choice((0, 256 << 20)), "CpuShares": 0},
                "State": {"Status": status, "Running": status == "running"},
            }, engine_cpus=16))
    return cluster


def timed(runs: int, call: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    cluster = make_cluster(random.Random(7), args.nodes, args.containers)
    reader = ClusterReader(cluster, "spread", lambda: ("primary", None), "127.0.0.1:2375")
    snap = reader()
    metrics = Metrics()
    metrics.watch_cluster(lambda: snap)
    text = metrics.render()
    page = render_page(snap, 1, PageQuery())
    print(f"{args.nodes} nodes, {args.containers} containers; {args.runs} runs; milliseconds")
    lines = text.count(b"\n")
    print(f"/metrics: {len(text) / 1024:.0f} KiB, {lines} lines; "
          f"page JSON: {len(page) / 1024:.0f} KiB")
    engines = list(cluster.engines.values())
    rng = random.Random(8)

    def one_engine_changed() -> None:
        engine = rng.choice(engines)
        for c in list(engine.containers.values())[:1]:
            engine.restore_container(Container(dict(c.inspect), engine_cpus=16))
        reader()

    for label, call in (
        ("snapshot, nothing changed", reader),
        ("snapshot, one engine changed", one_engine_changed),
        ("snapshot, cold (every engine)", lambda: ClusterReader(
            cluster, "spread", lambda: ("primary", None), "x")()),
        ("GET /metrics body", metrics.render),
        ("GET /api/cluster page (48 cards)", lambda: render_page(snap, 1, PageQuery())),
    ):
        p50, worst = timed(args.runs, call)
        print(f"{label:34} p50 {p50:7.1f}   max {worst:7.1f}")
    await asyncio.gather(*(e.client.close() for e in cluster.engines.values()))


if __name__ == "__main__":
    asyncio.run(main())  # engine clients need a running loop; nothing is awaited on it
