"""The interface every placement strategy implements, and the shared weighing."""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from shoal.scheduler.errors import NO_RESOURCES, SchedulerError
from shoal.scheduler.node import Node
from shoal.scheduler.request import Request


class Strategy(ABC):
    """Ranks the filtered nodes, best first."""

    name: ClassVar[str]

    @abstractmethod
    def rank(self, req: Request, nodes: Sequence[Node], limit: int | None = None) -> list[Node]:
        """Nodes best first (the first `limit` only, if given); SchedulerError when none
        has room."""


def best(keys: list[tuple[int, int, int]], limit: int | None) -> list[tuple[int, int, int]]:
    """The smallest keys in order: all of them sorted, or the first `limit` (a partial
    selection: the same prefix as sorting, without ordering the rest)."""
    if limit is None or limit >= len(keys):
        return sorted(keys)
    if limit == 1:
        return [min(keys)]
    return heapq.nsmallest(limit, keys)


def weigh(req: Request, nodes: Sequence[Node], health_factor: int) -> list[tuple[int, Node]]:
    """(weight, node) for every node the request fits on."""
    cpus, memory = req.cpus, req.memory
    out: list[tuple[int, Node]] = []
    append = out.append
    for node in nodes:
        total_cpus, total_memory = node.total_cpus, node.total_memory
        if total_memory < memory or total_cpus < cpus:
            continue
        cpu_score = (node.used_cpus + cpus) * 100 // total_cpus if cpus > 0 else 100
        mem_score = (node.used_memory + memory) * 100 // total_memory if memory > 0 else 100
        if cpu_score <= 100 and mem_score <= 100:
            append((cpu_score + mem_score + health_factor * node.health, node))
    if not out:
        raise SchedulerError(NO_RESOURCES)
    return out
