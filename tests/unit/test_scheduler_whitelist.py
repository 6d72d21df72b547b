"""The whitelist filter: `|`-separated exact node names, operator ignored, intersection."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.whitelist import WhitelistFilter
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import names, node


def cluster() -> list[Any]:
    return [node("a", cpus=1, memory=1), node("b", cpus=1, memory=1), node("c", cpus=1, memory=1)]


def run(*rules: str, soft: bool = True, labels: dict[str, str] | None = None) -> list[str]:
    req = PlacementRequest.from_config(
        {"Env": [f"whitelist:{r}" for r in rules], "Labels": labels or {}}
    )
    return names(WhitelistFilter().apply(req, cluster(), soft))


def test_pipe_separated_names() -> None:
    assert run("node==a|c") == ["a", "c"]


def test_operator_and_key_ignored() -> None:
    assert run("node!=a|c") == ["a", "c"]
    assert run("anything==b") == ["b"]


def test_exact_names_no_globs() -> None:
    with pytest.raises(
        FilterError,
        match=r"^unable to find a node that satisfies the whitelist "
        r"node==a\*$",
    ):
        run("node==a*")


def test_several_whitelists_intersect() -> None:
    assert run("node==a|b", "node==b|c") == ["b"]


def test_label_form() -> None:
    assert run(labels={"com.docker.swarm.whitelists": '["node==b|c"]'}) == ["b", "c"]


def test_soft_whitelist() -> None:
    assert run("node==~zz", soft=False) == ["a", "b", "c"]
    assert names(Scheduler().select({"Env": ["whitelist:node==~c"]}, cluster())) == ["c"]
    assert sorted(names(Scheduler().select({"Env": ["whitelist:node==~z"]}, cluster()))) == [
        "a",
        "b",
        "c",
    ]


def test_error_text_through_scheduler() -> None:
    with pytest.raises(SchedulerError) as info:
        Scheduler().select({"Env": ["whitelist:node==z|y"]}, cluster())
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "[node==z|y (soft=false)]"
    )
