"""`random` strategy: a uniform shuffle of the filtered nodes, no resource check."""

from __future__ import annotations

import random as _random
from collections.abc import Sequence

from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest
from shoal.scheduler.strategies.base import Strategy


class RandomStrategy(Strategy):
    """The generator is injectable so tests can seed it."""

    name = "random"
    keyed = False  # a shuffle has no key per node: its rankings cannot be kept

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng if rng is not None else _random.Random()

    def rank(
        self, req: PlacementRequest, nodes: Sequence[Node], limit: int | None = None
    ) -> list[Node]:
        out = list(nodes)
        self._rng.shuffle(out)  # whole: the generator advances as without a limit
        return out if limit is None else out[:limit]
