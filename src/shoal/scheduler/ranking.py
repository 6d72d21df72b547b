"""Rankings kept between decisions, for the requests placed by their size alone.

A create that names no host ports, links, rules or other dependencies is placed by
resources only: its filters keep the healthy nodes with a free slot, and spread or
binpack orders those by a key of the node and the request's CPUs and memory. Such
keys are kept sorted per request size. Node views are snapshots, replaced (never
changed) when their engine changes, so a decision re-keys only the nodes that are not
the very objects it saw last time: it costs what changed plus the nodes it returns,
not a weighing of every node.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, count
from operator import is_not

from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest

#: (sign * weight, sign * containers, position): unique, smallest first.
Key = tuple[int, int, int]

#: Request sizes remembered at once (a cluster's creates come in few sizes).
KEPT_SIZES = 8


def resources_only(req: PlacementRequest) -> bool:
    """Whether only health, slots and the strategy's weighing can tell nodes apart."""
    return not (
        (req.exposed_ports if req.host_mode else req.port_bindings)
        or req.volumes_from
        or req.links
        or req.net_container is not None
        or req.constraint_rules
        or req.affinity_rules
        or req.whitelist_rules
    )


@dataclass(slots=True)
class _Kept:
    nodes: list[Node]  # the views the keys were made from
    keys: list[Key | None]  # per position; None: the node cannot take the request
    order: list[Key]  # the keys that are not None, sorted


class KeptRankings:
    """Spread's or binpack's ranking of resources-only requests, kept per size.

    `sign` and `health_factor` are the strategy's (spread: 1, -10; binpack: -1, 10);
    `health` and `slots` say whether those filters are in the pipeline.
    """

    def __init__(self, sign: int, health_factor: int, *, health: bool, slots: bool) -> None:
        self._sign = sign
        self._health_factor = health_factor
        self._health = health
        self._slots = slots
        self._kept: dict[tuple[int, int], _Kept] = {}

    def rank(
        self, cpus: int, memory: int, nodes: Sequence[Node], limit: int | None
    ) -> list[Node] | None:
        """The ranking the filters and strategy would give, best first (the first
        `limit`); None when no node qualifies, for the full pipeline to say why."""
        size = (cpus, memory)
        kept = self._kept.pop(size, None)
        if kept is None or len(kept.nodes) != len(nodes):
            kept = self._fresh(cpus, memory, nodes)
        else:
            changed = list(compress(count(), map(is_not, nodes, kept.nodes)))
            if len(changed) > len(nodes) // 4 + 8:
                kept = self._fresh(cpus, memory, nodes)
            else:
                self._update(kept, cpus, memory, nodes, changed)
        self._kept[size] = kept  # most recently used last
        if len(self._kept) > KEPT_SIZES:
            del self._kept[next(iter(self._kept))]
        if not kept.order:
            return None
        order = kept.order if limit is None else kept.order[:limit]
        return [nodes[k[2]] for k in order]

    def _fresh(self, cpus: int, memory: int, nodes: Sequence[Node]) -> _Kept:
        keys = [self._key(n, i, cpus, memory) for i, n in enumerate(nodes)]
        return _Kept(list(nodes), keys, sorted(k for k in keys if k is not None))

    def _update(
        self, kept: _Kept, cpus: int, memory: int, nodes: Sequence[Node], changed: list[int]
    ) -> None:
        order = kept.order
        for i in changed:
            old = kept.keys[i]
            if old is not None:
                del order[bisect.bisect_left(order, old)]
            new = self._key(nodes[i], i, cpus, memory)
            kept.keys[i] = new
            if new is not None:
                bisect.insort(order, new)
            kept.nodes[i] = nodes[i]

    def _key(self, node: Node, position: int, cpus: int, memory: int) -> Key | None:
        """The node's sort key, or None where a filter or the weighing drops it
        (the rules of `HealthFilter`, `SlotsFilter` and `weigh`)."""
        if self._health and node.health <= 0:
            return None
        if self._slots:
            slots = node.slots_limit
            if slots is not None and len(node.containers) >= slots:
                return None
        total_cpus, total_memory = node.total_cpus, node.total_memory
        if total_memory < memory or total_cpus < cpus:
            return None
        cpu_score = (node.used_cpus + cpus) * 100 // total_cpus if cpus > 0 else 100
        mem_score = (node.used_memory + memory) * 100 // total_memory if memory > 0 else 100
        if cpu_score > 100 or mem_score > 100:
            return None
        weight = cpu_score + mem_score + self._health_factor * node.health
        return (self._sign * weight, self._sign * len(node.containers), position)
