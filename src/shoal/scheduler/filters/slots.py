"""`containerslots` filter: honour an engine's `containerslots=N` label."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import NO_SLOTS
from shoal.scheduler.filters.base import NodeFilter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


class SlotsFilter(NodeFilter):
    """Every container counts against the limit: stopped and pending ones too."""

    name = "containerslots"
    rejected = NO_SLOTS

    def accepted(self, nodes: Sequence[Node]) -> list[Node]:
        return [n for n in nodes if (slots := n.slots_limit) is None or len(n.containers) < slots]

    def listing(self, req: PlacementRequest) -> list[str]:
        return ["available container slots"]
