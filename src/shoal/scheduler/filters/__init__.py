"""Scheduler filters, by classic Swarm name, and the default pipeline order."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shoal.scheduler.errors import FILTER_NOT_SUPPORTED
from shoal.scheduler.filters.affinity import AffinityFilter
from shoal.scheduler.filters.base import Filter, NodeFilter
from shoal.scheduler.filters.constraint import ConstraintFilter
from shoal.scheduler.filters.dependency import DependencyFilter
from shoal.scheduler.filters.health import HealthFilter
from shoal.scheduler.filters.port import PortFilter
from shoal.scheduler.filters.slots import SlotsFilter
from shoal.scheduler.filters.whitelist import WhitelistFilter

DEFAULT_FILTERS = (
    "health",
    "port",
    "containerslots",
    "dependency",
    "affinity",
    "constraint",
    "whitelist",
)

FILTER_TYPES: Mapping[str, type[Filter]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            HealthFilter,
            PortFilter,
            SlotsFilter,
            DependencyFilter,
            AffinityFilter,
            ConstraintFilter,
            WhitelistFilter,
        )
    }
)


def make_filters(names: list[str] | tuple[str, ...]) -> list[Filter]:
    """Filter instances in the given order; ValueError("filter not supported") on unknown names."""
    out: list[Filter] = []
    for name in names:
        cls = FILTER_TYPES.get(name)
        if cls is None:
            raise ValueError(FILTER_NOT_SUPPORTED)
        out.append(cls())
    return out


__all__ = ["DEFAULT_FILTERS", "FILTER_TYPES", "Filter", "NodeFilter", "make_filters"]
