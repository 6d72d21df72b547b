"""`containerslots` filter: honour an engine's `containerslots=N` label."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import NO_SLOTS, FilterError
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import Request


class SlotsFilter(Filter):
    """Every container counts against the limit: stopped and pending ones too."""

    name = "containerslots"

    def apply(self, req: Request, nodes: Sequence[Node], soft: bool) -> list[Node]:
        result = [n for n in nodes if (slots := n.slots_limit) is None or len(n.containers) < slots]
        if not result:
            raise FilterError(NO_SLOTS)
        return result

    def listing(self, req: Request) -> list[str]:
        return ["available container slots"]
