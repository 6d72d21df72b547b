"""`health` filter: only engines whose health indicator is above zero."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import NO_HEALTHY_NODE
from shoal.scheduler.filters.base import NodeFilter
from shoal.scheduler.node import Node


class HealthFilter(NodeFilter):
    """Its error is returned raw, not wrapped into the conditions text."""

    name = "health"
    rejected = NO_HEALTHY_NODE

    def accepted(self, nodes: Sequence[Node]) -> list[Node]:
        return [n for n in nodes if n.health > 0]
