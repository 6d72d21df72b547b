"""`ClusterReader`: the snapshot of real Cluster/Engine objects (never started, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import Container, EngineSpecs
from shoal.ops.snapshot import ClusterReader
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine

SWARM_ID = "com.docker.swarm.id"


def container(cid: str, name: str, status: str, **hc: Any) -> Container:
    labels = {SWARM_ID: hc.pop("swarm_id")} if "swarm_id" in hc else {}
    return Container({
        "Id": cid * 8, "Name": "/" + name, "Created": hc.pop("created", "2026-01-01T00:00:00Z"),
        "Config": {"Image": "busybox", "Labels": labels},
        "HostConfig": {"CpuShares": 0, "Memory": 0, **hc},
        "State": {"Status": status, "Running": status == "running"},
    }, engine_cpus=4)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    settings = EngineSettings(overcommit=0.0)
    made = Cluster(settings, Scheduler(["health"], "spread"), EventBus())
    for i, state in enumerate((EngineState.HEALTHY, EngineState.UNHEALTHY, EngineState.PENDING)):
        specs = EngineSpecs(daemon_id=f"D{i}", name=f"node-{10 - i}", cpus=4, memory=8 << 30)
        adopt_engine(made, f"10.0.0.{i + 1}:2375", specs, state=state)
    yield made
    for engine in made.all_engines():
        await engine.client.close()


async def test_snapshot_reads_engines_and_reuses_unchanged_ones(cluster: Cluster) -> None:
    e0, e1, _ = cluster.all_engines()
    e0.restore_container(container("a", "web", "running", Memory=1 << 30, NanoCpus=2 * 10**9))
    e0.restore_container(container("b", "job", "exited"))
    e1.restore_container(container("c", "db", "running"))
    e1.error = "Cannot connect to the Docker daemon"
    reader = ClusterReader(cluster, "binpack", lambda: ("primary", None), "tcp://0.0.0.0:2375")
    snap = reader()
    assert [n.name for n in snap.nodes] == ["node-8", "node-9", "node-10"]  # natural order
    node10 = snap.nodes[2]
    assert (node10.state, node10.cpus, node10.reserved_cpus, node10.reserved_memory) == (
        "healthy", 4, 2, 1 << 30)
    assert [(c.name, c.state) for c in node10.containers] == [("job", "exited"), ("web", "running")]
    assert snap.nodes[1].state == "unhealthy" and snap.nodes[1].error.startswith("Cannot")
    assert snap.nodes[0].state == "pending"
    assert snap.engines_by_state() == {
        "healthy": 1, "unhealthy": 1, "pending": 1, "disconnected": 0}
    assert snap.containers_by_state["running"] == 2 and snap.containers_by_state["exited"] == 1
    assert snap.containers_by_state["paused"] == 0
    assert (snap.strategy, snap.role, snap.primary) == ("binpack", "primary", "tcp://0.0.0.0:2375")

    again = reader()
    assert again == snap and again.nodes[2].containers is node10.containers  # reused
    e0.restore_container(container("a", "web", "paused", Memory=1 << 30))
    changed = reader()
    assert [c.state for c in changed.nodes[2].containers] == ["exited", "paused"]
    assert changed.nodes[1].containers is snap.nodes[1].containers
    assert changed != snap


async def test_a_moved_container_is_counted_once(cluster: Cluster) -> None:
    e0, e1, _ = cluster.all_engines()
    # The watchdog's new copy on the healthy node, the stale one on the unhealthy node.
    e0.restore_container(container("n", "web", "running", swarm_id="S1",
                                   created="2026-02-01T00:00:00Z"))
    e1.restore_container(container("o", "web", "exited", swarm_id="S1"))
    snap = ClusterReader(cluster, "spread", lambda: ("replica", "10.9.9.9:2375"), "me")()
    assert snap.containers_by_state["running"] == 1
    assert snap.containers_by_state["exited"] == 0
    assert (snap.role, snap.primary) == ("replica", "10.9.9.9:2375")
