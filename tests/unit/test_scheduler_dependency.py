"""The dependency filter: --volumes-from, --link, --net=container: resolved per §3.3."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.dependency import DependencyFilter
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import ctr, names, node

ID1 = "1a2b3c4d5e6f" + "0" * 52
ID2 = "1a2b3c4d5e70" + "0" * 52
SWARM1 = "abcdef" + "9" * 58


def cluster() -> list[Any]:
    return [
        node("n0", ctr(ID1, "db", swarm_id=SWARM1), nid="E0"),
        node("n1", ctr(ID2, "cache"), nid="E1"),
        node("n2", nid="E2"),
    ]


def run(hc: dict[str, Any]) -> list[str]:
    return names(
        DependencyFilter().apply(PlacementRequest.from_config({"HostConfig": hc}), cluster(), True)
    )


@pytest.mark.parametrize(
    "ref",
    [
        "db",
        "/db",
        "n0/db",  # engine name + stored name
        "E0/db",  # engine ID + stored name
        ID1,
        ID1[:12],
        SWARM1,
        SWARM1[:12],
        "1a2b3c4d5e6",  # unique ID prefix
        "abcdef9",  # unique swarm-ID prefix
    ],
)
def test_references_resolve(ref: str) -> None:
    assert run({"VolumesFrom": [ref]}) == ["n0"]
    assert run({"Links": [f"{ref}:alias"]}) == ["n0"]
    assert run({"NetworkMode": f"container:{ref}"}) == ["n0"]


def test_volumes_from_mode_suffix_and_link_forms() -> None:
    assert run({"VolumesFrom": ["db:ro"]}) == ["n0"]
    assert run({"Links": ["/db:/web/db"]}) == ["n0"]
    assert run({"Links": ["cache"]}) == ["n1"]


def test_ambiguous_prefix_does_not_resolve() -> None:
    n = node("n", ctr(ID1, "a"), ctr(ID2, "b"))
    req = PlacementRequest.from_config({"HostConfig": {"VolumesFrom": ["1a2b3c4d5e"]}})
    with pytest.raises(FilterError):
        DependencyFilter().apply(req, [n], True)


def test_name_beats_id_prefix() -> None:
    n = node("n", ctr(ID1, "x"), ctr("con" + "1" * 61, "y"), ctr(ID2, "con"))
    req = PlacementRequest.from_config({"HostConfig": {"Links": ["con:c"]}})
    assert names(DependencyFilter().apply(req, [n], True)) == ["n"]


def test_all_dependencies_must_be_on_the_same_node() -> None:
    with pytest.raises(FilterError) as info:
        run({"VolumesFrom": ["db"], "Links": ["cache:c"]})
    assert str(info.value) == (
        "Unable to find a node fulfilling all dependencies: --volumes-from=db --link=cache:c"
    )


def test_no_dependencies_keeps_all() -> None:
    assert run({}) == ["n0", "n1", "n2"]


def test_error_text_through_scheduler() -> None:
    cfg = {
        "HostConfig": {"VolumesFrom": ["nope:ro"], "Links": ["x:y"], "NetworkMode": "container:z"}
    }
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, cluster())
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n"
        "[available container slots]\n"
        "[--volumes-from=nope:ro --link=x:y --net=container:z]"
    )
