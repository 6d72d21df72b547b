"""`binpack` strategy: fill the most loaded node that still fits first."""

from __future__ import annotations

from shoal.scheduler.strategies.base import WeighingStrategy


class BinpackStrategy(WeighingStrategy):
    """Weight descending (healthier raises it); ties: more containers first."""

    name = "binpack"
    sign = -1
    health_factor = 10
