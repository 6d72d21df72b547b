"""`affinity` filter: place next to (or away from) containers, images or container labels."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import FilterError
from shoal.scheduler.expr import Candidates
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


def affinity_candidates(node: Node, key: str) -> Candidates:
    """The strings an affinity with `key` is matched against on `node`."""
    if key == "container":
        return node.container_strings
    if key == "image":
        return node.image_strings
    return node.label_values(key)


class AffinityFilter(Filter):
    """Each expression narrows the survivors of the previous one."""

    name = "affinity"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        candidates = list(nodes)
        for expr in req.affinities:
            if expr.soft and not soft:
                continue
            match, key = expr.match_candidates, expr.key
            if key == "container":
                candidates = [n for n in candidates if match(n.container_strings)]
            elif key == "image":
                candidates = [n for n in candidates if match(n.image_strings)]
            else:
                candidates = [n for n in candidates if match(n.label_values(key))]
            if not candidates:
                raise FilterError(f"unable to find a node that satisfies the affinity {expr.text}")
        return candidates

    def concerns(self, req: PlacementRequest) -> bool:
        return bool(req.affinity_rules)

    def listing(self, req: PlacementRequest) -> list[str]:
        return [e.listing for e in req.affinities]
