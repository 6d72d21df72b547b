"""The kept rankings read the pipeline's own rules: a filter they cannot account for
makes them step aside, never skipped; node filters and strategy keys are the pipeline's."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import pytest

import shoal.scheduler.filters as filters_module
from shoal.scheduler import DEFAULT_FILTERS, Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters import Filter, NodeFilter, make_filters
from shoal.scheduler.node import Node
from shoal.scheduler.ranking import KeptRankings, changed_positions
from shoal.scheduler.request import PlacementRequest
from shoal.scheduler.strategies import make_strategy

from .scheduler_factories import ctr, names, node

GB = 1024**3


class GpuFilter(Filter):
    """A new filter that does not say which requests concern it: all of them, then."""

    name = "gpu"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        out = [n for n in nodes if n.labels.get("gpu") == "yes"]
        if not out:
            raise FilterError("no gpu")
        return out


class GpuLabelFilter(GpuFilter):
    """The same rule, only for the requests labelled `gpu`, and it says so."""

    name = "gpulabel"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        return super().apply(req, nodes, soft) if self.concerns(req) else list(nodes)

    def concerns(self, req: PlacementRequest) -> bool:
        return "gpu" in (req.config.get("Labels") or {})


class MaintenanceFilter(NodeFilter):
    """A new node filter: the kept rankings apply its rule themselves."""

    name = "maintenance"
    rejected = "every node is in maintenance"

    def accepted(self, nodes: Sequence[Node]) -> list[Node]:
        return [n for n in nodes if n.labels.get("maintenance") != "yes"]


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test filters, registered the way the built-in ones are."""
    types = dict(filters_module.FILTER_TYPES)
    types.update({f.name: f for f in (GpuFilter, GpuLabelFilter, MaintenanceFilter)})
    monkeypatch.setattr(filters_module, "FILTER_TYPES", MappingProxyType(types))


@pytest.fixture
def kept_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[Node] | None]:
    """What each use of the kept rankings returned."""
    calls: list[list[Node] | None] = []
    original = KeptRankings.rank

    def spy(
        self: KeptRankings, cpus: int, memory: int, nodes: Sequence[Node], limit: int | None
    ) -> list[Node] | None:
        out = original(self, cpus, memory, nodes, limit)
        calls.append(out)
        return out

    monkeypatch.setattr(KeptRankings, "rank", spy)
    return calls


def cluster() -> list[Node]:
    # Spread puts a plain request on "idle" first, gpu or not.
    return [
        node("idle", cpus=4, memory=4 * GB),
        node("busy", ctr("1", "x", memory=2 * GB), labels={"gpu": "yes"}, cpus=4, memory=4 * GB),
    ]


def outcome(sched: Scheduler, config: dict[str, Any], nodes: list[Node]) -> list[str] | str:
    try:
        return names(sched.select(config, nodes))
    except SchedulerError as err:
        return str(err)


def test_default_pipeline_serves_requests_placed_by_size(
    kept_calls: list[list[Node] | None],
) -> None:
    sched = Scheduler()
    nodes = cluster()
    assert outcome(sched, {"HostConfig": {"Memory": GB}}, nodes) == ["idle", "busy"]
    assert outcome(sched, {"HostConfig": {"NetworkMode": "host"}}, nodes) == ["idle", "busy"]
    assert len(kept_calls) == 2
    for config in (
        {"Env": ["constraint:node==busy"]},
        {"Env": ["affinity:container==x"]},
        {"Env": ["whitelist:node==busy"]},
        {"HostConfig": {"Links": ["x:x"]}},
        {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}},
        {"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "host"}},
    ):
        outcome(sched, config, nodes)
        assert len(kept_calls) == 2, config  # it concerns a filter: the full pipeline ran


def test_new_filter_makes_the_fast_path_step_aside(kept_calls: list[list[Node] | None]) -> None:
    nodes = cluster()
    assert outcome(Scheduler(), {}, nodes)[0] == "idle"  # the kept ranking, without gpu
    kept_calls.clear()
    sched = Scheduler([*DEFAULT_FILTERS, "gpu"])
    for _ in range(3):  # warm or cold, the gpu rule is never skipped
        assert outcome(sched, {}, nodes) == ["busy"]
    assert kept_calls == []
    nodes[1] = node("busy", labels={"gpu": "no"}, cpus=4, memory=4 * GB)
    failed = outcome(sched, {}, nodes)
    assert isinstance(failed, str) and failed.startswith("Unable to find a node that satisfies")
    kept = KeptRankings(make_strategy("spread"), make_filters([*DEFAULT_FILTERS, "gpu"]))
    assert not kept.serves(PlacementRequest.from_config({}))


def test_filter_unconcerned_keeps_the_fast_path(kept_calls: list[list[Node] | None]) -> None:
    sched = Scheduler([*DEFAULT_FILTERS, "gpulabel"])
    nodes = cluster()
    assert outcome(sched, {}, nodes) == ["idle", "busy"]
    assert len(kept_calls) == 1
    assert outcome(sched, {"Labels": {"gpu": "1"}}, nodes) == ["busy"]
    assert len(kept_calls) == 1


def test_node_filter_rule_applied_by_kept_rankings(kept_calls: list[list[Node] | None]) -> None:
    filters = [*DEFAULT_FILTERS, "maintenance"]
    sched, full = Scheduler(filters), Scheduler(filters, keep_rankings=False)
    nodes = cluster()
    nodes[0] = node("idle", labels={"maintenance": "yes"}, cpus=4, memory=4 * GB)
    assert outcome(sched, {}, nodes) == outcome(full, {}, nodes) == ["busy"]
    assert [names(r) if r else r for r in kept_calls] == [["busy"]]
    nodes[1] = node("busy", labels={"maintenance": "yes"}, cpus=4, memory=4 * GB)  # re-keyed
    expected = outcome(full, {}, nodes)
    assert isinstance(expected, str) and "available container slots" in expected
    assert outcome(sched, {}, nodes) == expected  # none left: the pipeline says why
    assert kept_calls[-1] is None


def test_unkeyed_strategy_is_never_kept(kept_calls: list[list[Node] | None]) -> None:
    assert len(outcome(Scheduler(strategy="random"), {}, cluster())) == 2
    assert kept_calls == []
    with pytest.raises(ValueError, match="random"):
        KeptRankings(make_strategy("random"), make_filters(DEFAULT_FILTERS))


def test_kept_keys_are_the_strategys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept rankings call the strategy's `keys`: no weighing of their own."""
    strategy = make_strategy("binpack")
    seen: list[int] = []
    keys: Callable[..., Any] = strategy.keys

    def spy(cpus: int, memory: int, nodes: Sequence[Node], positions: Any) -> Any:
        seen.append(len(nodes))
        return keys(cpus, memory, nodes, positions)

    monkeypatch.setattr(strategy, "keys", spy)
    kept = KeptRankings(strategy, make_filters(DEFAULT_FILTERS))
    nodes = cluster()
    ranked = kept.rank(0, GB, nodes, None)
    assert ranked is not None and names(ranked) == ["busy", "idle"]
    nodes[0] = node("idle", ctr("2", "y", memory=3 * GB), cpus=4, memory=4 * GB)
    ranked = kept.rank(0, GB, nodes, 1)
    assert ranked is not None and names(ranked) == ["idle"]
    assert seen == [2, 1]  # all nodes, then only the changed one


def test_changed_positions_finds_every_replaced_view() -> None:
    seen = [node(f"n{i}") for i in range(300)]  # more than one run of nodes compared at once
    assert changed_positions(list(seen), seen) == []
    now = list(seen)
    replaced = [0, 127, 128, 129, 255, 256, 299]
    for i in replaced:
        now[i] = node(f"n{i}")  # an equal-looking new snapshot is still a change
    assert changed_positions(now, seen) == replaced
    assert changed_positions(tuple(now), seen) == replaced  # any sequence


def test_kept_rankings_match_the_pipeline_at_scale() -> None:
    """Hundreds of nodes (several runs), a few or many replaced between decisions."""
    rng = random.Random(5)

    def view(i: int, containers: int) -> Node:
        labels = {"containerslots": str(rng.randint(0, 6))} if rng.random() < 0.2 else {}
        cs = [
            ctr("", None, cpus=rng.randint(0, 1), memory=rng.randint(0, 2))
            for _ in range(containers)
        ]
        return node(
            f"n{i}",
            *cs,
            labels=labels,
            health=rng.choice((0, 50, 100, 100)),
            cpus=rng.choice((0, 2, 8)),
            memory=rng.choice((0, 4, 16)),
        )

    nodes = [view(i, rng.randint(0, 4)) for i in range(400)]
    for strategy in ("spread", "binpack"):
        kept, full = Scheduler(strategy=strategy), Scheduler(strategy=strategy, keep_rankings=False)
        for _ in range(60):
            config = {"HostConfig": {"CpuShares": rng.randint(0, 2), "Memory": rng.randint(0, 3)}}
            limit = rng.choice((None, 1, 3))
            assert names_or_error(kept, config, nodes, limit) == names_or_error(
                full, config, nodes, limit
            )
            for i in rng.sample(range(len(nodes)), rng.choice((0, 1, 2, 5, 150))):
                nodes[i] = view(i, rng.randint(0, 6))


def names_or_error(
    sched: Scheduler, config: dict[str, Any], nodes: list[Node], limit: int | None
) -> list[str] | str:
    try:
        return names(sched.select(config, nodes, limit=limit))
    except SchedulerError as err:
        return str(err)
