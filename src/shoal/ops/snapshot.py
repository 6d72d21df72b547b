"""An immutable picture of the cluster for the metrics and the page, taken at most once a second.

`ClusterReader` is the only code in `shoal.ops` that reads the cluster's and engines'
attributes: when those are renamed, this is the one class to change.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import is_

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineState
from shoal.cluster.records import Container

__all__ = [
    "CONTAINER_STATES",
    "ENGINE_STATES",
    "ClusterReader",
    "ClusterSnapshot",
    "ContainerView",
    "NodeView",
    "SnapshotCache",
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


@dataclass(slots=True)
class _EngineMemo:
    """One engine's containers as last read, kept by identity so unchanged ones are reused."""

    seen: tuple[Container, ...]
    views: tuple[ContainerView, ...]
    states: Counter[str]
    reserved_cpus: int
    reserved_memory: int


class ClusterReader:
    """Copies what the ops endpoints need out of the live cluster (on the event loop).

    Engines' cached containers are replaced, never mutated, when they change, so an
    engine whose container objects are the same ones as last time is not read again:
    at a thousand nodes a snapshot costs what changed since the last one.
    """

    def __init__(
        self,
        cluster: Cluster,
        strategy: str,
        role: Callable[[], tuple[str, str | None]],
        self_addr: str,
    ) -> None:
        self._cluster = cluster
        self._strategy = strategy
        self._role = role
        self._self_addr = self_addr
        self._memo: dict[str, _EngineMemo] = {}

    def __call__(self) -> ClusterSnapshot:
        cluster = self._cluster
        nodes = []
        totals: Counter[str] = Counter()
        memo: dict[str, _EngineMemo] = {}
        for engine in cluster.all_engines():
            entry = engine.addr
            m = self._engine(self._memo.get(entry), tuple(engine.containers.values()))
            memo[entry] = m
            totals.update(m.states)
            nodes.append(
                NodeView(
                    name=engine.specs.name or engine.addr,
                    addr=engine.addr,
                    state=_STATE_NAMES[engine.state],
                    error=engine.error,
                    cpus=engine.total_cpus,
                    reserved_cpus=m.reserved_cpus,
                    memory=engine.total_memory,
                    reserved_memory=m.reserved_memory,
                    failures=engine.failure_count,
                    containers=m.views,
                )
            )
        self._memo = memo
        # A container moved off a failed node is cached twice until the node is cleaned:
        # count it once, as `docker ps` lists it once.
        for placed in cluster.hidden_copies():
            totals[placed.container.status or "unknown"] -= 1
        nodes.sort(key=lambda n: (natural_key(n.name), n.addr))
        role_name, primary = self._role()
        return ClusterSnapshot(
            strategy=self._strategy,
            role=role_name,
            primary=primary or (self._self_addr if role_name == "primary" else ""),
            nodes=tuple(nodes),
            containers_by_state={**dict.fromkeys(CONTAINER_STATES, 0), **totals},
            event_listeners=cluster.bus.listeners,
            taken_at=time.time(),
        )

    @staticmethod
    def _engine(old: _EngineMemo | None, seen: tuple[Container, ...]) -> _EngineMemo:
        if old is not None and len(old.seen) == len(seen) and all(map(is_, old.seen, seen)):
            return old
        views = tuple(
            sorted(
                (
                    ContainerView(
                        id=c.id,
                        name=c.name.lstrip("/"),
                        image=c.image,
                        state=c.status or "unknown",
                    )
                    for c in seen
                ),
                key=lambda v: v.name,
            )
        )
        return _EngineMemo(
            seen=seen,
            views=views,
            states=Counter(v.state for v in views),
            reserved_cpus=sum(c.reserved_cpus for c in seen),
            reserved_memory=sum(c.reserved_memory for c in seen),
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

    def latest(self) -> ClusterSnapshot:
        """The last snapshot without reading the cluster: safe off the event loop."""
        snapshot = self._snapshot
        if snapshot is None:
            raise LookupError("no snapshot taken yet")
        return snapshot

    def get(self) -> ClusterSnapshot:
        """The snapshot, taken again if older than `max_age` (event loop only)."""
        now = self._clock()
        if self._snapshot is None or now - self._at >= self._max_age:
            fresh = self._read()
            if fresh != self._snapshot:
                self.version += 1
            self._snapshot = fresh
            self._at = now
        return self._snapshot
