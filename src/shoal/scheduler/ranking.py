"""Rankings kept between decisions, for the requests placed by their size alone.

A create that concerns none of the pipeline's filters but its node filters (health,
container slots: `NodeFilter`) is placed by resources only: those filters keep the
nodes they accept, and a keyed strategy (spread, binpack) orders them by a key of the
node and the request's CPUs and memory. Such keys are kept sorted per request size.
Node views are snapshots, replaced (never changed) when their engine changes, so a
decision re-keys only the nodes that are not the very objects it saw last time: it
costs what changed plus the nodes it returns, not a weighing of every node.

The rules are the pipeline's own: each filter says whether a request concerns it, each
node filter states its per-node rule, the strategy gives its keys; nothing is copied.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, count
from operator import is_not

from shoal.scheduler.filters.base import Filter, NodeFilter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest
from shoal.scheduler.strategies.base import Key, Strategy

#: Request sizes remembered at once (a cluster's creates come in few sizes).
KEPT_SIZES = 8

#: Nodes compared at once when looking for the changed ones (`changed_positions`).
_RUN = 128


def changed_positions(nodes: Sequence[Node], seen: Sequence[Node]) -> list[int]:
    """The positions where `nodes` holds another view than `seen` (of equal length).

    Views compare by identity (`eq=False`), so comparing runs of the two lists skips an
    unchanged run in C, and only a run that differs is scanned node by node: a decision
    mostly follows a change or two, and this is the fast path's one pass over every node.
    """
    out: list[int] = []
    for lo in range(0, len(seen), _RUN):
        now, then = nodes[lo : lo + _RUN], seen[lo : lo + _RUN]
        if now != then:
            out.extend(compress(count(lo), map(is_not, now, then)))
    return out


@dataclass(slots=True)
class _Kept:
    nodes: list[Node]  # the views the keys were made from
    keys: list[Key | None]  # per position; None: a node filter or the strategy drops it
    order: list[Key]  # the keys that are not None, sorted


class KeptRankings:
    """A keyed strategy's ranking after a pipeline's filters, kept per request size."""

    def __init__(self, strategy: Strategy, filters: Sequence[Filter]) -> None:
        if not strategy.keyed:
            raise ValueError(f"the {strategy.name} strategy's rankings cannot be kept")
        # Bound methods fetched once: a decision pays no attribute lookups per filter.
        self._strategy_keys = strategy.keys
        self._node_rules: tuple[Callable[[Sequence[Node]], list[Node]], ...] = tuple(
            f.accepted for f in filters if isinstance(f, NodeFilter)
        )
        self._concerns: tuple[Callable[[PlacementRequest], bool], ...] = tuple(
            f.concerns for f in filters if not isinstance(f, NodeFilter)
        )
        self._kept: dict[tuple[int, int], _Kept] = {}

    def serves(self, req: PlacementRequest) -> bool:
        """Whether the kept ranking is the pipeline's for `req`: no filter other than
        the node filters concerns it (and a filter concerns it unless it says not)."""
        for concerns in self._concerns:
            if concerns(req):
                return False
        return True

    def rank(
        self, cpus: int, memory: int, nodes: Sequence[Node], limit: int | None
    ) -> list[Node] | None:
        """For a request it `serves`: the ranking the filters and strategy would give,
        best first (the first `limit`); None when no node qualifies, for the full
        pipeline to say why."""
        size = (cpus, memory)
        kept = self._kept.pop(size, None)
        if kept is None or len(kept.nodes) != len(nodes):
            kept = self._fresh(cpus, memory, nodes)
        else:
            changed = changed_positions(nodes, kept.nodes)
            if len(changed) > len(nodes) // 4 + 8:
                kept = self._fresh(cpus, memory, nodes)
            elif changed:
                self._update(kept, cpus, memory, nodes, changed)
        self._kept[size] = kept  # most recently used last
        if len(self._kept) > KEPT_SIZES:
            del self._kept[next(iter(self._kept))]
        if not kept.order:
            return None
        order = kept.order if limit is None else kept.order[:limit]
        return [nodes[k[2]] for k in order]

    def _fresh(self, cpus: int, memory: int, nodes: Sequence[Node]) -> _Kept:
        keys = self._keys(cpus, memory, nodes, range(len(nodes)))
        # Keys are non-empty tuples: filter(None) drops exactly the Nones.
        return _Kept(list(nodes), keys, sorted(filter(None, keys)))

    def _update(
        self, kept: _Kept, cpus: int, memory: int, nodes: Sequence[Node], changed: list[int]
    ) -> None:
        order, keys, views = kept.order, kept.keys, kept.nodes
        replaced = [nodes[i] for i in changed]
        for j, new in enumerate(self._keys(cpus, memory, replaced, changed)):
            i = changed[j]
            old = keys[i]
            if old is not None:
                del order[bisect.bisect_left(order, old)]
            keys[i] = new
            if new is not None:
                bisect.insort(order, new)
            views[i] = replaced[j]

    def _keys(
        self, cpus: int, memory: int, nodes: Sequence[Node], positions: Sequence[int]
    ) -> list[Key | None]:
        """The strategy's key per node (at `positions`), None where a node filter
        rejects the node or the strategy finds no room on it."""
        keys = self._strategy_keys(cpus, memory, nodes, positions)
        for accepted in self._node_rules:
            passed = accepted(nodes)
            if len(passed) < len(nodes):  # most often all pass: nothing to drop
                ids = set(map(id, passed))  # the very objects: alive, so ids are unique
                keys = [k if id(n) in ids else None for k, n in zip(keys, nodes, strict=True)]
        return keys
