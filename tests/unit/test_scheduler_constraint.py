"""The constraint filter: node name/ID, engine labels, health, soft rules, texts."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.constraint import ConstraintFilter
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import names, node


def cluster() -> list[Any]:
    return [
        node(
            "node-0",
            nid="AAAA:BBBB",
            labels={
                "storage": "ssd",
                "storagedriver": "overlay2",
                "ostype": "linux",
                "region": "us-east",
            },
        ),
        node(
            "node-1",
            nid="CCCC:DDDD",
            labels={
                "storage": "disk",
                "storagedriver": "vfs",
                "ostype": "linux",
                "region": "us-west",
            },
        ),
        node("node-2", nid="EEEE:FFFF", labels={"ostype": "windows"}, health=0),
    ]


def run(*rules: str, soft: bool = True) -> list[str]:
    req = PlacementRequest.from_config({"Env": [f"constraint:{r}" for r in rules]})
    return names(ConstraintFilter().apply(req, cluster(), soft))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("node==node-1", ["node-1"]),
        ("node==CCCC:DDDD", ["node-1"]),
        ("node!=node-1", ["node-0", "node-2"]),
        ("node==node-*", ["node-0", "node-1", "node-2"]),
        ("node==/node-[01]/", ["node-0", "node-1"]),
        ("node==(?i)NODE-0", ["node-0"]),
        ("node==/(?i)NODE-2/", ["node-2"]),
        ("storage==ssd", ["node-0"]),
        ("storage!=ssd", ["node-1", "node-2"]),  # missing label is "" and != keeps it
        ("storagedriver==overlay*", ["node-0"]),
        ("ostype==linux", ["node-0", "node-1"]),
        ("region==us-*", ["node-0", "node-1"]),
        ("region==/west$/", ["node-1"]),
        ("region==us.east", ["node-0"]),  # "." is a regex character in globs
        ("health==healthy", ["node-0", "node-1"]),
        ("health==unhealthy", ["node-2"]),
        ("health!=healthy", ["node-2"]),
        ("storage==", None),
    ],
)
def test_constraint_forms(rule: str, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(Exception):  # noqa: B017 - parse error, checked elsewhere
            run(rule)
    else:
        assert run(rule) == expected


def test_missing_label_matches_empty_only_via_glob() -> None:
    with pytest.raises(FilterError):
        run("nosuch==x")
    assert run("nosuch==*") == ["node-0", "node-1", "node-2"]


def test_constraints_intersect() -> None:
    assert run("ostype==linux", "storage!=ssd") == ["node-1"]


def test_soft_constraint_dropped_in_second_pass() -> None:
    assert run("node==~node-9", soft=False) == ["node-0", "node-1", "node-2"]
    with pytest.raises(
        FilterError,
        match=r"^unable to find a node that satisfies the constraint "
        r"node==node-9$",
    ):
        run("node==~node-9")


def test_soft_constraint_prefers_matching_node() -> None:
    nodes = [node("a", cpus=1, memory=1), node("b", cpus=1, memory=1)]
    assert names(Scheduler().select({"Env": ["constraint:node==~b"]}, nodes)) == ["b"]
    assert sorted(names(Scheduler().select({"Env": ["constraint:node==~zz"]}, nodes))) == ["a", "b"]


def test_hard_unsatisfiable_error_text() -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({"Env": ["constraint:node==node-9"]}, cluster())
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "[node==node-9]"
    )


def test_soft_failing_listing_hides_tilde() -> None:
    cfg = {"Labels": {"com.docker.swarm.constraints": '["node==~node-9","storage==nvme"]'}}
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, cluster())
    assert str(info.value).endswith("\n[available container slots]\n[node==node-9 storage==nvme]")


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("name=node0", "One of operator ==, != is expected"),
        ("x==a", "Key 'x' is invalid"),
        ("node==a@b", "Value 'a@b' is invalid"),
    ],
)
def test_parse_errors_listed(rule: str, error: str) -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({"Env": [f"constraint:{rule}"]}, cluster())
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        f"error from constraint filter: {error}"
    )


def test_listing_walk_stops_at_failed_filter() -> None:
    # constraint fails; whitelist comes after it and is not listed.
    cfg = {"Env": ["constraint:node==zz", "whitelist:node==node-0", "affinity:a1!=b"]}
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, cluster())
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "[a1!=b (soft=false)]\n"
        "[node==zz]"
    )
