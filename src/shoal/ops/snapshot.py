"""An immutable picture of the cluster for the metrics and the page, taken at most once a second.

`read_cluster` is the only code in `shoal.ops` that reads the cluster's and engines'
attributes: when those are renamed, this is the one function to change.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineState

__all__ = [
    "CONTAINER_STATES",
    "ENGINE_STATES",
    "ClusterSnapshot",
    "ContainerView",
    "NodeView",
    "SnapshotCache",
    "read_cluster",
]

#: Engine states as the metrics and the page name them, in display order.
ENGINE_STATES = ("healthy", "unhealthy", "pending", "disconnected")
#: Docker's container states; always reported, so a count can fall to 0.
CONTAINER_STATES = ("running", "paused", "restarting", "created", "exited", "removing", "dead")


@dataclass(frozen=True, slots=True)
class ContainerView:
    id: str
    name: str
    image: str
    state: str


@dataclass(frozen=True, slots=True)
class NodeView:
    """One engine: health, resources (totals include overcommit) and its containers."""

    name: str
    addr: str
    state: str
    error: str
    cpus: int
    reserved_cpus: int
    memory: int
    reserved_memory: int
    #: Consecutive failed calls since the engine last answered.
    failures: int
    containers: tuple[ContainerView, ...]


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything the ops endpoints show; equal snapshots mean nothing visible changed."""

    strategy: str
    role: str
    primary: str
    nodes: tuple[NodeView, ...]
    #: Every container once (a moved container's stale copy is not counted twice).
    containers_by_state: dict[str, int]
    event_listeners: int
    taken_at: float = field(default=0.0, compare=False)

    def engines_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(ENGINE_STATES, 0)
        for node in self.nodes:
            counts[node.state] = counts.get(node.state, 0) + 1
        return counts


def natural_key(text: str) -> list[int | str]:
    """`node-2` before `node-10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def read_cluster(
    cluster: Cluster, strategy: str, role: tuple[str, str | None], self_addr: str
) -> ClusterSnapshot:
    """Copy what the ops endpoints need out of the live cluster (on the event loop)."""
    nodes = []
    for engine in cluster.engines.values():
        containers = tuple(
            sorted(
                (
                    ContainerView(
                        id=c.id,
                        name=c.name.lstrip("/"),
                        image=str(c.config.get("Image") or ""),
                        state=c.status or "unknown",
                    )
                    for c in engine.containers.values()
                ),
                key=lambda c: c.name,
            )
        )
        name = engine.specs.name or engine.addr
        nodes.append(
            NodeView(
                name=name,
                addr=engine.addr,
                state=_STATE_NAMES[engine.state],
                error=engine.error,
                cpus=engine.total_cpus,
                reserved_cpus=sum(c.reserved_cpus for c in engine.containers.values()),
                memory=engine.total_memory,
                reserved_memory=sum(c.reserved_memory for c in engine.containers.values()),
                failures=engine.failure_count,
                containers=containers,
            )
        )
    nodes.sort(key=lambda n: (natural_key(n.name), n.addr))
    by_state: Counter[str] = Counter(p.container.status or "unknown" for p in cluster.containers())
    role_name, primary = role
    return ClusterSnapshot(
        strategy=strategy,
        role=role_name,
        primary=primary or (self_addr if role_name == "primary" else ""),
        nodes=tuple(nodes),
        containers_by_state={**dict.fromkeys(CONTAINER_STATES, 0), **by_state},
        event_listeners=cluster.bus.listeners,
        taken_at=time.time(),
    )


_STATE_NAMES = {
    EngineState.HEALTHY: "healthy",
    EngineState.UNHEALTHY: "unhealthy",
    EngineState.PENDING: "pending",
    EngineState.DISCONNECTED: "disconnected",
}


class SnapshotCache:
    """Reuses one snapshot for `max_age` seconds, however many scrapes and pages ask.

    `version` moves only when the cluster looks different, so pages can skip a redraw.
    """

    def __init__(
        self,
        read: Callable[[], ClusterSnapshot],
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._snapshot: ClusterSnapshot | None = None
        self._at = 0.0
        self.version = 0

    def get(self) -> ClusterSnapshot:
        now = self._clock()
        if self._snapshot is None or now - self._at >= self._max_age:
            fresh = self._read()
            if fresh != self._snapshot:
                self.version += 1
            self._snapshot = fresh
            self._at = now
        return self._snapshot
