"""Spread, binpack and random: weights, exclusion, ties, health factor, overcommit."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError, with_overcommit
from shoal.scheduler.request import PlacementRequest
from shoal.scheduler.strategies import canonical_strategy, make_strategy
from shoal.scheduler.strategies.base import weigh
from shoal.scheduler.strategies.binpack import BinpackStrategy
from shoal.scheduler.strategies.random import RandomStrategy
from shoal.scheduler.strategies.spread import SpreadStrategy

from .scheduler_factories import ctr, names, node

GB = 1024**3


def req(cpus: int = 0, memory: int = 0) -> PlacementRequest:
    return PlacementRequest.from_config({"HostConfig": {"CpuShares": cpus, "Memory": memory}})


def test_weights() -> None:
    n = node("n", ctr("a", "a", cpus=1, memory=GB), cpus=4, memory=4 * GB, health=100)
    # cpu (1+1)*100/4 = 50, mem (1+1)*100/4 = 50, health -10*100; then 1 container
    assert SpreadStrategy().keys(1, GB, [n], [7]) == [(50 + 50 - 1000, 1, 7)]
    # nothing requested: both scores fixed at 100; binpack's sign is -1
    assert BinpackStrategy().keys(0, 0, [n], [0]) == [(-(200 + 1000), -1, 0)]


def test_integer_division() -> None:
    n = node("n", cpus=3, memory=3)
    assert weigh(1, 1, [n], [0], sign=1, health_factor=0) == [(33 + 33, 0, 0)]


def test_keys_none_where_no_room() -> None:
    small = node("small", cpus=1, memory=GB)
    full = node("full", ctr("a", "a", cpus=2), cpus=2, memory=8 * GB)
    ok = node("ok", cpus=4, memory=8 * GB)
    keys = SpreadStrategy().keys(2, 2 * GB, [small, full, ok], range(3))
    assert keys[:2] == [None, None]
    assert keys[2] is not None and keys[2][2] == 2


def test_random_is_not_keyed() -> None:
    assert SpreadStrategy.keyed and BinpackStrategy.keyed and not RandomStrategy.keyed
    with pytest.raises(NotImplementedError):
        RandomStrategy().keys(0, 0, [node("n")], [0])


def test_exclusion_and_fit() -> None:
    small = node("small", cpus=1, memory=GB)
    full = node("full", ctr("a", "a", cpus=2), cpus=2, memory=8 * GB)
    ok = node("ok", cpus=4, memory=8 * GB)
    assert names(SpreadStrategy().rank(req(2, 2 * GB), [small, full, ok])) == ["ok"]
    with pytest.raises(SchedulerError) as info:
        SpreadStrategy().rank(req(2, 2 * GB), [small, full])
    assert str(info.value) == "no resources available to schedule container"


def test_nodes_without_limits_accept_unconstrained_containers() -> None:
    n = node("n", cpus=0, memory=0)
    assert names(SpreadStrategy().rank(req(), [n])) == ["n"]
    with pytest.raises(SchedulerError):
        SpreadStrategy().rank(req(1), [n])


def test_overcommit_example() -> None:
    total = with_overcommit(100 * GB, 0.05)
    n = node("n", cpus=1, memory=total)
    assert names(BinpackStrategy().rank(req(memory=105 * GB), [n])) == ["n"]
    with pytest.raises(SchedulerError, match=r"^no resources available to schedule container$"):
        BinpackStrategy().rank(req(memory=106 * GB), [n])


def test_spread_prefers_least_loaded() -> None:
    busy = node("busy", ctr("a", "a", memory=2 * GB), cpus=4, memory=4 * GB)
    idle = node("idle", cpus=4, memory=4 * GB)
    assert names(SpreadStrategy().rank(req(memory=GB), [busy, idle])) == ["idle", "busy"]


def test_binpack_prefers_most_loaded_that_fits() -> None:
    busy = node("busy", ctr("a", "a", memory=2 * GB), cpus=4, memory=4 * GB)
    idle = node("idle", cpus=4, memory=4 * GB)
    over = node("over", ctr("b", "b", memory=4 * GB), cpus=4, memory=4 * GB)
    assert names(BinpackStrategy().rank(req(memory=GB), [idle, busy, over])) == ["busy", "idle"]


def test_spread_ties_fewer_containers_first_binpack_more() -> None:
    a = node("a", ctr("1", "1"), ctr("2", "2", state="exited"), cpus=1, memory=1)
    b = node("b", ctr("3", "3"), cpus=1, memory=1)
    c = node("c", cpus=1, memory=1)
    assert names(SpreadStrategy().rank(req(), [a, b, c])) == ["c", "b", "a"]
    assert names(BinpackStrategy().rank(req(), [c, b, a])) == ["a", "b", "c"]


def test_health_factor_healthier_wins() -> None:
    sick = node("sick", cpus=1, memory=1, health=50)
    well = node("well", ctr("1", "1"), cpus=1, memory=1, health=100)
    assert names(SpreadStrategy().rank(req(), [sick, well])) == ["well", "sick"]
    assert names(BinpackStrategy().rank(req(), [sick, well])) == ["well", "sick"]


def test_binpack_fills_node_before_next() -> None:
    sched = Scheduler(strategy="binpack")
    nodes: list[Any] = [
        node("node-0", cpus=2, memory=2 * GB),
        node("node-1", cpus=2, memory=2 * GB),
    ]
    placed = []
    cfg = {"HostConfig": {"Memory": GB // 2}}
    for _ in range(8):
        chosen = sched.select(cfg, nodes)[0]
        placed.append(chosen.name)
        nodes[nodes.index(chosen)] = chosen.with_containers(ctr("", None, memory=GB // 2))
    assert placed == ["node-0"] * 4 + ["node-1"] * 4
    with pytest.raises(SchedulerError, match=r"^no resources available to schedule container$"):
        sched.select(cfg, nodes)


def test_spread_balances() -> None:
    sched = Scheduler()
    nodes: list[Any] = [node(f"n{i}", cpus=1, memory=1) for i in range(3)]
    placed = []
    for _ in range(9):
        chosen = sched.select({}, nodes)[0]
        placed.append(chosen.name)
        nodes[nodes.index(chosen)] = chosen.with_containers(ctr("", None))
    assert sorted(placed) == ["n0"] * 3 + ["n1"] * 3 + ["n2"] * 3


def test_random_is_a_shuffle_without_resource_check() -> None:
    nodes = [node(f"n{i}", cpus=0, memory=0) for i in range(6)]
    ranked = RandomStrategy(random.Random(7)).rank(req(cpus=99, memory=GB), nodes)
    assert sorted(names(ranked)) == sorted(names(nodes))
    seen = {tuple(names(RandomStrategy(random.Random(s)).rank(req(), nodes))) for s in range(20)}
    assert len(seen) > 1


def test_random_seeded_is_reproducible() -> None:
    nodes = [node(f"n{i}") for i in range(10)]
    one = Scheduler(strategy="random", rng=random.Random(3)).select({}, nodes)
    two = Scheduler(strategy="random", rng=random.Random(3)).select({}, nodes)
    assert names(one) == names(two)


def test_strategy_names() -> None:
    assert canonical_strategy("binpacking") == "binpack"
    assert Scheduler(strategy="binpacking").strategy_name == "binpack"
    assert make_strategy("random").name == "random"
    with pytest.raises(ValueError, match=r"^strategy not supported$"):
        Scheduler(strategy="roundrobin")


def test_strategy_error_not_wrapped() -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({"HostConfig": {"Memory": GB}}, [node("n", cpus=1, memory=1)])
    assert str(info.value) == "no resources available to schedule container"
