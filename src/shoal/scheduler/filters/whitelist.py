"""`whitelist` filter: only the engines named in a `|`-separated list."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


class WhitelistFilter(Filter):
    """Key and operator are ignored (`!=` acts as `==`); several lists intersect."""

    name = "whitelist"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        candidates = list(nodes)
        for expr in req.whitelists:
            if expr.soft and not soft:
                continue
            allowed = frozenset(expr.value.split("|"))
            candidates = [n for n in candidates if n.name in allowed]
            if not candidates:
                raise FilterError(f"unable to find a node that satisfies the whitelist {expr.text}")
        return candidates

    def concerns(self, req: PlacementRequest) -> bool:
        return bool(req.whitelist_rules)

    def listing(self, req: PlacementRequest) -> list[str]:
        return [e.listing for e in req.whitelists]
