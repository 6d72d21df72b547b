"""The pipeline: filter validation, order, two passes and request extraction."""

from __future__ import annotations

import pytest

from shoal.scheduler import DEFAULT_FILTERS, Scheduler, SchedulerError
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import ctr, names, node


def test_default_filters_and_names() -> None:
    s = Scheduler()
    assert (
        s.filter_names
        == list(DEFAULT_FILTERS)
        == ["health", "port", "containerslots", "dependency", "affinity", "constraint", "whitelist"]
    )
    assert s.strategy_name == "spread"
    assert Scheduler(filters=["constraint", "health"]).filter_names == ["constraint", "health"]


def test_unknown_filter() -> None:
    with pytest.raises(ValueError, match=r"^filter not supported$"):
        Scheduler(filters=["health", "nope"])


def test_filters_run_in_order_and_health_is_raw() -> None:
    n = node("n", health=0, labels={"containerslots": "0"})
    with pytest.raises(SchedulerError, match=r"^No healthy node available in the cluster$"):
        Scheduler().select({}, [n])
    with pytest.raises(SchedulerError) as info:
        Scheduler(filters=["containerslots", "health"]).select({}, [n])
    assert str(info.value).startswith("Unable to find a node that satisfies the following")


def test_second_pass_only_drops_soft_rules() -> None:
    nodes = [node("a", cpus=1, memory=1, labels={"disk": "ssd"}), node("b", cpus=1, memory=1)]
    cfg = {"Env": ["constraint:node==~b", "constraint:disk==ssd"]}
    assert names(Scheduler().select(cfg, nodes)) == ["a"]


def test_second_pass_after_strategy_failure() -> None:
    # Pass 1: the soft affinity pins to "small", which lacks memory -> pass 2 picks "big".
    small = node("small", ctr("a" * 64, "db"), cpus=1, memory=10)
    big = node("big", cpus=1, memory=1000)
    cfg = {"Env": ["affinity:container==~db"], "HostConfig": {"Memory": 100}}
    assert names(Scheduler().select(cfg, [small, big])) == ["big"]


def test_request_resources_and_legacy_fields() -> None:
    r = PlacementRequest.from_config({"HostConfig": {"CpuShares": 2, "Memory": 5}})
    assert (r.cpus, r.memory) == (2, 5)
    r = PlacementRequest.from_config(
        {"Memory": 7, "CpuShares": 3, "HostConfig": {"CpuShares": 2, "Memory": 5}}
    )
    assert (r.cpus, r.memory) == (3, 7)
    r = PlacementRequest.from_config({"HostConfig": {"NanoCpus": 1_500_000_000}})
    assert r.cpus == 2
    r = PlacementRequest.from_config({"HostConfig": {"NanoCpus": 2_000_000_000}})
    assert r.cpus == 2


def test_env_and_label_rules_combine() -> None:
    r = PlacementRequest.from_config(
        {
            "Env": ["constraint:node==a", "PATH=/bin", "affinity:image==x", "whitelist:node==a|b"],
            "Labels": {"com.docker.swarm.constraints": '["region==eu"]'},
        }
    )
    assert r.constraint_rules == ("region==eu", "node==a")
    assert r.affinity_rules == ("image==x",)
    assert r.whitelist_rules == ("node==a|b",)


def test_selecting_does_not_mutate_inputs() -> None:
    cfg = {"Env": ["constraint:node==a"], "HostConfig": {"Memory": 1}}
    nodes = [node("a", cpus=1, memory=10)]
    Scheduler().select(cfg, nodes)
    assert cfg == {"Env": ["constraint:node==a"], "HostConfig": {"Memory": 1}}
