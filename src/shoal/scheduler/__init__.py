"""Classic Swarm's scheduler as pure logic: filters, strategies and their inputs."""

from __future__ import annotations

from shoal.scheduler.errors import ExprError, SchedulerError
from shoal.scheduler.filters import DEFAULT_FILTERS
from shoal.scheduler.labels import build_container_config, build_scheduling_config
from shoal.scheduler.node import Node, NodeContainer, NodeImage
from shoal.scheduler.resources import (
    container_cpus,
    engine_cpu_shares,
    requested_resources,
    with_overcommit,
)
from shoal.scheduler.scheduler import Scheduler
from shoal.scheduler.strategies import DEFAULT_STRATEGY

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_STRATEGY",
    "ExprError",
    "Node",
    "NodeContainer",
    "NodeImage",
    "Scheduler",
    "SchedulerError",
    "build_container_config",
    "build_scheduling_config",
    "container_cpus",
    "engine_cpu_shares",
    "requested_resources",
    "with_overcommit",
]
