"""Placement strategies, by classic Swarm name."""

from __future__ import annotations

import random as _random

from shoal.scheduler.errors import STRATEGY_NOT_SUPPORTED
from shoal.scheduler.strategies.base import Strategy
from shoal.scheduler.strategies.binpack import BinpackStrategy
from shoal.scheduler.strategies.random import RandomStrategy
from shoal.scheduler.strategies.spread import SpreadStrategy

DEFAULT_STRATEGY = "spread"
STRATEGY_NAMES = ("spread", "binpack", "random")
_ALIASES = (("binpacking", "binpack"),)


def canonical_strategy(name: str) -> str:
    """The canonical name (`binpacking` -> `binpack`); ValueError if unknown."""
    name = dict(_ALIASES).get(name, name)
    if name not in STRATEGY_NAMES:
        raise ValueError(STRATEGY_NOT_SUPPORTED)
    return name


def make_strategy(name: str, rng: _random.Random | None = None) -> Strategy:
    """A strategy instance; `rng` only matters for `random`."""
    name = canonical_strategy(name)
    if name == "spread":
        return SpreadStrategy()
    if name == "binpack":
        return BinpackStrategy()
    return RandomStrategy(rng)


__all__ = ["DEFAULT_STRATEGY", "STRATEGY_NAMES", "Strategy", "canonical_strategy", "make_strategy"]
