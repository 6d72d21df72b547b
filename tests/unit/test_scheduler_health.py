"""The health filter: only nodes with a positive health indicator; raw error text."""

from __future__ import annotations

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.health import HealthFilter
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import names, node


def test_keeps_only_healthy_nodes_in_order() -> None:
    nodes = [node("a", health=0), node("b", health=1), node("c", health=100), node("d", health=0)]
    assert names(HealthFilter().apply(PlacementRequest.from_config({}), nodes, True)) == ["b", "c"]


def test_no_healthy_node_error_is_raw() -> None:
    with pytest.raises(FilterError):
        HealthFilter().apply(PlacementRequest.from_config({}), [node("a", health=0)], True)
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({}, [node("a", health=0)])
    assert str(info.value) == "No healthy node available in the cluster"


def test_empty_cluster_reports_no_healthy_node() -> None:
    with pytest.raises(SchedulerError, match=r"^No healthy node available in the cluster$"):
        Scheduler().select({}, [])


def test_without_health_filter_empty_cluster_reports_no_nodes() -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler(filters=["constraint"]).select({}, [])
    assert str(info.value) == "No nodes available in the cluster"
