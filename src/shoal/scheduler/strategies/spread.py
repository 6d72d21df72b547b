"""`spread` strategy: least loaded node first."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.node import Node
from shoal.scheduler.request import Request
from shoal.scheduler.strategies.base import Strategy, best, weigh


class SpreadStrategy(Strategy):
    """Weight ascending (healthier lowers it); ties: fewer containers first."""

    name = "spread"

    def rank(self, req: Request, nodes: Sequence[Node], limit: int | None = None) -> list[Node]:
        weighted = weigh(req, nodes, health_factor=-10)
        keys = [(w, len(n.containers), i) for i, (w, n) in enumerate(weighted)]
        return [weighted[i][1] for _, _, i in best(keys, limit)]
