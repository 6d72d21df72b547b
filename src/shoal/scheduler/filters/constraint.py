"""`constraint` filter: match engine ID/name (`node`) or engine labels."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import FilterError
from shoal.scheduler.expr import Expr
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


def _select(expr: Expr, nodes: Sequence[Node]) -> list[Node]:
    if expr.key == "node":
        return [n for n in nodes if expr.match(n.id, n.name)]
    # Label values repeat across engines: match each distinct value once.
    memo: dict[str, bool] = {}
    out = []
    for n in nodes:
        value = n.constraint_value(expr.key)
        ok = memo.get(value)
        if ok is None:
            ok = memo[value] = expr.match(value)
        if ok:
            out.append(n)
    return out


class ConstraintFilter(Filter):
    """A missing label matches as the empty string."""

    name = "constraint"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        candidates = list(nodes)
        for expr in req.constraints:
            if expr.soft and not soft:
                continue
            candidates = _select(expr, candidates)
            if not candidates:
                raise FilterError(
                    f"unable to find a node that satisfies the constraint {expr.text}"
                )
        return candidates

    def concerns(self, req: PlacementRequest) -> bool:
        return bool(req.constraint_rules)

    def listing(self, req: PlacementRequest) -> list[str]:
        return [e.text for e in req.constraints]
