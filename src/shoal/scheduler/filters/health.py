"""`health` filter: only engines whose health indicator is above zero."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import NO_HEALTHY_NODE, FilterError
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import Request


class HealthFilter(Filter):
    """Its error is returned raw, not wrapped into the conditions text."""

    name = "health"

    def apply(self, req: Request, nodes: Sequence[Node], soft: bool) -> list[Node]:
        result = [n for n in nodes if n.health > 0]
        if not result:
            raise FilterError(NO_HEALTHY_NODE)
        return result
