"""The containerslots filter: `containerslots=N` engine label caps container count."""

from __future__ import annotations

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.slots import SlotsFilter
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import ctr, names, node


def run(*nodes_: object) -> list[str]:
    return names(SlotsFilter().apply(PlacementRequest.from_config({}), list(nodes_), True))  # type: ignore[arg-type]


def test_limit_counts_all_containers() -> None:
    full = node(
        "full", ctr("a", "a"), ctr("b", "b", state="exited"), labels={"containerslots": "2"}
    )
    room = node("room", ctr("c", "c"), labels={"containerslots": "2"})
    assert run(full, room) == ["room"]


@pytest.mark.parametrize("value", ["abc", "", "1.5", " 1"])
def test_non_integer_label_means_unlimited(value: str) -> None:
    assert run(node("n", ctr("a", "a"), ctr("b", "b"), labels={"containerslots": value})) == ["n"]


def test_no_label_means_unlimited() -> None:
    assert run(node("n", *[ctr(str(i), str(i)) for i in range(50)])) == ["n"]


def test_zero_and_signed_values() -> None:
    assert run(
        node("z", labels={"containerslots": "0"}), node("p", labels={"containerslots": "+1"})
    ) == ["p"]


def test_error_and_listing() -> None:
    with pytest.raises(
        FilterError, match=r"No node with enough open slots available in the cluster"
    ):
        run(node("z", labels={"containerslots": "0"}))
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({}, [node("z", labels={"containerslots": "0"})])
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]"
    )


def test_pending_creates_fill_slots() -> None:
    sched = Scheduler()
    n = node("n", labels={"containerslots": "1"}, cpus=1, memory=1)
    first = sched.select({}, [n])[0]
    assert first is n
    n2 = n.with_containers(ctr("", "p"))
    with pytest.raises(SchedulerError, match=r"\[available container slots\]"):
        sched.select({}, [n2])
