"""`spread` strategy: least loaded node first."""

from __future__ import annotations

from shoal.scheduler.strategies.base import WeighingStrategy


class SpreadStrategy(WeighingStrategy):
    """Weight ascending (healthier lowers it); ties: fewer containers first."""

    name = "spread"
    sign = 1
    health_factor = -10
