"""Scheduler benchmark: decisions/s and p50/p99 latency on a large synthetic cluster.

Usage: python bench/bench_scheduler.py [--nodes 1000] [--containers 30000] [--decisions 2000]
                                       [--requests mixed|plain|fresh]

Each decision runs the default filters and one strategy on a mix of requests (plain,
published port, constraints, affinities, a soft rule that forces the second pass),
then records the container as pending on the chosen node, which replaces that
node's snapshot (and so rebuilds its indexes), as the cluster does.

`--requests plain` sends only requests placed by their size (the kept rankings' fast
path: a decision re-keys the node changed since the last one); `fresh` gives every
decision a size not among the sizes kept, so each one keys every node (the fast
path's cold cost).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from shoal.scheduler import DEFAULT_FILTERS, Node, NodeContainer, NodeImage, Scheduler
from shoal.scheduler.errors import SchedulerError

GB = 1024**3
MB = 1024**2
REGIONS = ("eu-west", "eu-central", "us-east", "us-west")
APPS = ("web", "api", "db", "cache", "worker", "batch")
IMAGES = ("nginx:1.25", "redis:7.0", "postgres:16", "busybox:latest", "python:3.11", "node:20")


def make_container(rng: random.Random, node_idx: int, i: int) -> NodeContainer:
    app = rng.choice(APPS)
    hc: dict[str, Any] = {"Memory": rng.choice((0, 64 * MB, 256 * MB)), "NetworkMode": "bridge"}
    ports: dict[str, Any] = {}
    if rng.random() < 0.3:
        host_port = str(rng.randint(20000, 40000))
        hc["PortBindings"] = {"80/tcp": [{"HostIp": "", "HostPort": host_port}]}
        ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": host_port}]}
    return NodeContainer(
        id=f"{rng.getrandbits(256):064x}",
        names=[f"/{app}-{node_idx}-{i}"],
        image=rng.choice(IMAGES),
        labels={"app": app, "team": f"t{rng.randint(0, 20)}", "com.docker.swarm.id": "x"},
        state=rng.choice(("running", "running", "running", "exited")),
        host_config=hc,
        config_exposed_ports=["80/tcp"],
        network_ports=ports,
        cpus=rng.choice((0, 0, 0, 1)),
        memory=int(hc["Memory"]),
        swarm_id=f"{rng.getrandbits(256):064x}",
    )


def make_cluster(rng: random.Random, n_nodes: int, n_containers: int) -> list[Node]:
    per_node = n_containers // n_nodes
    nodes = []
    for n in range(n_nodes):
        labels = {
            "storagedriver": "overlay2",
            "kernelversion": "6.1.0-13-amd64",
            "operatingsystem": "Debian GNU/Linux 12 (bookworm)",
            "ostype": "linux",
            "region": REGIONS[n % len(REGIONS)],
            "storage": "ssd" if n % 3 else "disk",
        }
        if n % 10 == 0:
            labels["containerslots"] = "100"
        images = [
            NodeImage(f"sha256:{rng.getrandbits(256):064x}", [tag]) for tag in rng.sample(IMAGES, 4)
        ]
        nodes.append(
            Node(
                id=f"{rng.getrandbits(128):032X}",
                name=f"node-{n}",
                addr=f"127.0.0.1:{20000 + n}",
                labels=labels,
                health=100 if n % 50 else 50,
                total_cpus=64,
                total_memory=512 * GB,
                containers=[make_container(rng, n, i) for i in range(per_node)],
                images=images,
            )
        )
    return nodes


def requests(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"Image": "nginx", "HostConfig": {"Memory": 128 * MB}},
        {
            "Image": "nginx",
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {
                "Memory": 64 * MB,
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": str(30000)}]},
            },
        },
        {"Image": "redis", "Env": ["constraint:region==eu-*", "constraint:storage!=disk"]},
        {"Image": "redis", "Env": ["affinity:image==redis:7.0", "affinity:container!=db-1-*"]},
        {"Image": "x", "Env": ["affinity:app==cache", "constraint:node==/node-1[0-9]+$/"]},
        {"Image": "x", "Env": ["constraint:node==~node-does-not-exist"], "HostConfig": {}},
        {"Image": "x", "HostConfig": {"CpuShares": 2, "Memory": GB}},
    ]


def plain_requests(rng: random.Random) -> list[dict[str, Any]]:
    """Requests the kept rankings serve: a few sizes, no rules, ports or dependencies."""
    return [
        {"Image": "nginx", "HostConfig": {"Memory": 128 * MB}},
        {"Image": "x", "HostConfig": {"CpuShares": 2, "Memory": GB}},
        {"Image": "busybox"},
    ]


def fresh_requests(rng: random.Random) -> list[dict[str, Any]]:
    """More sizes than the rankings keep, cycled: every decision keys every node."""
    return [{"Image": "x", "HostConfig": {"Memory": (i + 1) * MB}} for i in range(16)]


REQUESTS = {"mixed": requests, "plain": plain_requests, "fresh": fresh_requests}


def percentile(sorted_values: list[float], pct: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[idx]


def bench(
    strategy: str, n_nodes: int, n_containers: int, decisions: int, seed: int, kind: str
) -> None:
    rng = random.Random(seed)
    nodes = make_cluster(rng, n_nodes, n_containers)
    position = {id(n): i for i, n in enumerate(nodes)}
    sched = Scheduler(DEFAULT_FILTERS, strategy, rng=random.Random(seed))
    configs = REQUESTS[kind](rng)

    # Cold: the first decisions build every node's indexes (once per node snapshot).
    t0 = time.perf_counter()
    for config in configs:
        try:
            sched.select(config, nodes)
        except SchedulerError:
            pass
    cold_ms = (time.perf_counter() - t0) * 1000

    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    for d in range(decisions):
        config = configs[d % len(configs)]
        t = time.perf_counter()
        try:
            chosen = sched.select(config, nodes)[0]
        except SchedulerError:
            failures += 1
            latencies.append(time.perf_counter() - t)
            continue
        latencies.append(time.perf_counter() - t)
        # Record the pending container: a new snapshot for that node only.
        i = position.pop(id(chosen))
        nodes[i] = chosen.with_containers(NodeContainer.pending(config, f"c{d}"))
        position[id(nodes[i])] = i
    total = time.perf_counter() - start
    lat = sorted(x * 1000 for x in latencies)
    print(
        f"{strategy:8s} {kind:6s} nodes={n_nodes} containers={n_containers} decisions={decisions} "
        f"failures={failures} | {decisions / total:8.1f} decisions/s | "
        f"p50 {statistics.median(lat):6.2f} ms  p99 {percentile(lat, 99):6.2f} ms  "
        f"max {lat[-1]:6.2f} ms | index build ({len(configs)} cold decisions) {cold_ms:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=30000)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategy", action="append", choices=("spread", "binpack", "random"))
    parser.add_argument("--requests", choices=tuple(REQUESTS), default="mixed")
    args = parser.parse_args()
    for strategy in args.strategy or ("spread", "binpack", "random"):
        bench(strategy, args.nodes, args.containers, args.decisions, args.seed, args.requests)


if __name__ == "__main__":
    main()
