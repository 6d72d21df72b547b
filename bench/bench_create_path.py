"""The scheduling part of a create, in process, over N never-started engines x K containers.

Usage: python bench/bench_create_path.py [--nodes 1000] [--containers 30] [--creates 50]

Times (CPU) what `Cluster.create_container` does under the schedule lock: the node views,
the scheduler's decision and the engines it may try; then the chosen engine gets the new
container through its own cache call, as the create's events would do. No network: the
engines are real `Engine` objects whose caches are filled directly.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time

from shoal.cluster.client import EngineAddress, EngineClient
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import Container, EngineSpecs
from shoal.scheduler.scheduler import Scheduler

MB = 1 << 20


def container(cid: str, name: str) -> Container:
    return Container(
        {
            "Id": cid,
            "Name": "/" + name,
            "Created": "2026-01-01T00:00:00Z",
            "Config": {"Image": "busybox", "Labels": {"com.docker.swarm.id": cid}},
            "HostConfig": {"CpuShares": 0, "Memory": 16 * MB},
            "State": {"Status": "running", "Running": True},
        },
        engine_cpus=4,
    )


async def run(nodes: int, per_node: int, creates: int, strategy: str) -> None:
    settings = EngineSettings()
    cluster = Cluster(settings, Scheduler(strategy=strategy), EventBus())
    for i in range(nodes):
        address = EngineAddress.parse(f"127.0.0.1:{20000 + i}")
        engine = Engine(address, EngineClient(address, None), settings, cluster)
        engine.specs = EngineSpecs(daemon_id=f"D{i:05d}", name=f"node-{i}", cpus=4,
                                   memory=8 << 30)
        engine.state = EngineState.HEALTHY
        cluster._engines[address.entry] = engine
        for k in range(per_node):
            engine.restore_container(container(f"{i:05d}{k:04d}".ljust(64, "0"), f"c{i}-{k}"))
    # Older code has no `limit`: it ranked (and mapped back) every node.
    limited = "limit" in inspect.signature(cluster.scheduler.select).parameters

    def schedule() -> list[Engine]:
        config = {"Image": "busybox", "HostConfig": {"Memory": 16 * MB}}
        views = cluster.node_views()
        if limited:
            ranked = cluster.scheduler.select(config, views, limit=1)
        else:
            ranked = cluster.scheduler.select(config, views)
        return [cluster.engine_for_node(n) for n in ranked]

    start = time.process_time()
    schedule()
    first = time.process_time() - start
    times = []
    for j in range(creates):
        start = time.process_time()
        chosen = schedule()[0]
        times.append(time.process_time() - start)
        chosen.restore_container(container(f"n{j:07d}".ljust(64, "0"), f"n{j}"))
    times.sort()
    print(
        f"N={nodes} K={per_node} {strategy}: first create {first * 1e3:.1f} ms CPU "
        f"(builds every view); then p50 {times[len(times) // 2] * 1e3:.2f} ms, "
        f"max {times[-1] * 1e3:.2f} ms CPU per create (n={creates})"
    )
    for engine in cluster.all_engines():
        await engine.client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--strategy", default="spread")
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.containers, args.creates, args.strategy))


if __name__ == "__main__":
    main()
