"""The interface every placement strategy implements, and the shared weighing.

Spread and binpack rank nodes by a key of each node alone (`Strategy.keys`): the full
pipeline sorts the keys of the filtered nodes, and the kept rankings (ranking.py) keep
them sorted between decisions, so both rank by this one weighing.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar

from shoal.scheduler.errors import NO_RESOURCES, SchedulerError
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest

#: A node's place in a ranking, smallest first: (sign * weight, sign * containers,
#: position). The position makes keys unique, so ties break by input order.
Key = tuple[int, int, int]


class Strategy(ABC):
    """Ranks the filtered nodes, best first."""

    name: ClassVar[str]
    #: Whether the ranking is the nodes in the order of their `keys`: what lets a
    #: ranking be kept between decisions and re-keyed only where nodes changed.
    keyed: ClassVar[bool] = False

    @abstractmethod
    def rank(
        self, req: PlacementRequest, nodes: Sequence[Node], limit: int | None = None
    ) -> list[Node]:
        """Nodes best first (the first `limit` only, if given); SchedulerError when none
        has room."""

    def keys(
        self, cpus: int, memory: int, nodes: Sequence[Node], positions: Iterable[int]
    ) -> list[Key | None]:
        """Per node, the key of a request for `cpus` and `memory`, with the node's
        position from `positions`; None where it has no room. Keyed strategies only."""
        raise NotImplementedError(f"the {self.name} strategy does not rank by keys")


def best(keys: list[Key], limit: int | None) -> list[Key]:
    """The smallest keys in order: all of them sorted, or the first `limit` (a partial
    selection: the same prefix as sorting, without ordering the rest)."""
    if limit is None or limit >= len(keys):
        return sorted(keys)
    if limit == 1:
        return [min(keys)]
    return heapq.nsmallest(limit, keys)


def weigh(
    cpus: int,
    memory: int,
    nodes: Sequence[Node],
    positions: Iterable[int],
    sign: int,
    health_factor: int,
) -> list[Key | None]:
    """Swarm's weighing as keys: CPU and memory scores (percent used once the request
    is placed) plus `health_factor` * health, then the container count, both times
    `sign`; None where the request does not fit. One loop, no call per node."""
    out: list[Key | None] = []
    append = out.append
    # No strict=: zip with a keyword takes a slow path, ~0.1 µs a call (most key one node).
    for node, position in zip(nodes, positions):  # noqa: B905
        total_cpus, total_memory = node.total_cpus, node.total_memory
        if total_memory < memory or total_cpus < cpus:
            append(None)
            continue
        cpu_score = (node.used_cpus + cpus) * 100 // total_cpus if cpus > 0 else 100
        mem_score = (node.used_memory + memory) * 100 // total_memory if memory > 0 else 100
        if cpu_score > 100 or mem_score > 100:
            append(None)
            continue
        weight = cpu_score + mem_score + health_factor * node.health
        append((sign * weight, sign * len(node.containers), position))
    return out


class WeighingStrategy(Strategy):
    """Ranks by `weigh` with the subclass's sign (1: ascending) and health factor."""

    keyed = True
    sign: ClassVar[int]
    health_factor: ClassVar[int]

    def keys(
        self, cpus: int, memory: int, nodes: Sequence[Node], positions: Iterable[int]
    ) -> list[Key | None]:
        return weigh(cpus, memory, nodes, positions, self.sign, self.health_factor)

    def rank(
        self, req: PlacementRequest, nodes: Sequence[Node], limit: int | None = None
    ) -> list[Node]:
        # Keys are non-empty tuples: filter(None) drops exactly the nodes without room.
        keys = list(filter(None, self.keys(req.cpus, req.memory, nodes, range(len(nodes)))))
        if not keys:
            raise SchedulerError(NO_RESOURCES)
        return [nodes[k[2]] for k in best(keys, limit)]
