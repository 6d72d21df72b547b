"""The affinity filter: container, image and container-label keys, hard and soft."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.affinity import AffinityFilter
from shoal.scheduler.node import NodeImage
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import ctr, names, node

CID = "f" * 64


def cluster() -> list[Any]:
    return [
        node(
            "n0",
            ctr(CID, "redis", labels={"app": "cache", "tier": "back"}),
            images=[NodeImage("sha256:" + "1" * 64, ["redis:7.0", "localhost:5000/redis:latest"])],
        ),
        node(
            "n1",
            ctr("e" * 64, "web", labels={"app": "frontend"}),
            images=[NodeImage("sha256:" + "2" * 64, ["nginx:latest"])],
        ),
        node("n2", ctr("d" * 64, None, labels={"other": "x"})),
    ]


def run(*rules: str, soft: bool = True) -> list[str]:
    req = PlacementRequest.from_config({"Env": [f"affinity:{r}" for r in rules]})
    return names(AffinityFilter().apply(req, cluster(), soft))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("container==redis", ["n0"]),
        ("container==" + CID, ["n0"]),
        ("container==re*", ["n0"]),
        ("container==/^w/", ["n1"]),
        ("container!=redis", ["n1", "n2"]),
        ("container==/redis", []),  # names are matched without the leading "/"
        ("container==" + "d" * 64, []),  # unnamed containers don't count
        ("image==redis", ["n0"]),
        ("image==redis:7.0", ["n0"]),
        ("image==localhost:5000/redis", ["n0"]),
        ("image==localhost:5000/redis:latest", ["n0"]),
        ("image==sha256:" + "2" * 64, ["n1"]),
        ("image==nginx*", ["n1"]),
        ("image!=nginx", ["n0", "n2"]),
        ("app==cache", ["n0"]),
        ("app!=cache", ["n1", "n2"]),
        ("app==front*", ["n1"]),
        ("tier==back", ["n0"]),
        ("app==/^(cache|frontend)$/", ["n0", "n1"]),
    ],
)
def test_affinity_forms(rule: str, expected: list[str]) -> None:
    if expected:
        assert run(rule) == expected
    else:
        with pytest.raises(FilterError):
            run(rule)


def test_missing_label_is_empty_string_candidate() -> None:
    # n2's container has no "app" label: its candidate is "", which "*" matches.
    assert run("app==*") == ["n0", "n1", "n2"]


def test_node_without_containers_has_no_candidates() -> None:
    empty = node("empty")
    req = PlacementRequest.from_config({"Env": ["affinity:app!=cache"]})
    assert names(AffinityFilter().apply(req, [empty], True)) == ["empty"]
    req = PlacementRequest.from_config({"Env": ["affinity:app==*"]})
    with pytest.raises(FilterError):
        AffinityFilter().apply(req, [empty], True)


def test_expressions_narrow_successively() -> None:
    assert run("app!=cache", "container!=web") == ["n2"]


def test_soft_rules_skipped_in_second_pass() -> None:
    with pytest.raises(FilterError):
        run("container==~nothere")
    assert run("container==~nothere", soft=False) == ["n0", "n1", "n2"]


def test_label_form() -> None:
    req = PlacementRequest.from_config(
        {
            "Labels": {"com.docker.swarm.affinities": '["container==web"]'},
            "Env": ["affinity:app!=cache"],
        }
    )
    assert [e.text for e in req.affinities] == ["container==web", "app!=cache"]
    assert names(AffinityFilter().apply(req, cluster(), True)) == ["n1"]


def test_error_text_through_scheduler() -> None:
    cfg = {"Env": ["affinity:test.label!=true", "affinity:container==~x"]}
    nodes = [node("n0", ctr("a" * 64, "a", labels={"test.label": "true"}))]
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, nodes)
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "[test.label!=true (soft=false) container==x (soft=true)]"
    )


def test_soft_affinity_prefers_then_falls_back() -> None:
    nodes = [node("n0", cpus=1, memory=1), node("n1", ctr("a" * 64, "db"), cpus=1, memory=1)]
    sched = Scheduler()
    assert names(sched.select({"Env": ["affinity:container==~db"]}, nodes)) == ["n1"]
    ranked = sched.select({"Env": ["affinity:container==~gone"]}, nodes)
    assert sorted(names(ranked)) == ["n0", "n1"]


def test_parse_error_listing() -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({"Env": ["affinity:x==1"]}, [node("n0")])
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "error from affinity filter: Key 'x' is invalid"
    )
