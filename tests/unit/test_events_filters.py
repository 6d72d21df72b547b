"""`/events` query handling: Docker's filter semantics, time parsing, resume dedup."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.api.http import HTTPError
from shoal.api.primary.events import event_matches, event_time, parse_event_time
from shoal.cluster.events import SeenEvents, since_param


def container_event(action: str = "start", cid: str = "abc123def456", name: str = "web",
                    image: str = "busybox:latest", node: str = "node-1",
                    **attrs: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "status": action,
        "id": cid,
        "from": f"{image} node:{node}",
        "scope": "local",
        "Actor": {"ID": cid, "Attributes": {"name": name, "image": image,
                                             "node.name": node, "node.id": f"ID-{node}",
                                             **attrs}},
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }


def network_event(action: str = "connect", nid: str = "net999", name: str = "mynet",
                  container: str = "abc123def456") -> dict[str, Any]:
    return {
        "Type": "network",
        "Action": action,
        "scope": "local",
        "Actor": {"ID": nid, "Attributes": {"name": name, "container": container,
                                             "type": "bridge", "node.name": "node-0",
                                             "node.id": "ID-node-0"}},
        "time": 1700000001,
        "timeNano": 1700000001000000000,
    }


def test_no_filters_match_everything() -> None:
    assert event_matches(container_event(), {})


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"event": ["start"]}, True),
        ({"event": ["stop"]}, False),
        ({"event": ["stop", "start"]}, True),
        ({"type": ["container"]}, True),
        ({"type": ["network"]}, False),
        ({"node": ["node-1"]}, True),
        ({"node": ["ID-node-1"]}, True),
        ({"node": ["node-2"]}, False),
        ({"node": ["node"]}, False),  # node names are exact, not prefixes
        ({"container": ["web"]}, True),
        ({"container": ["we"]}, True),  # Docker matches names and IDs by prefix
        ({"container": ["abc123"]}, True),
        ({"container": ["db"]}, False),
        ({"image": ["busybox"]}, True),
        ({"image": ["busybox:latest"]}, True),
        ({"image": ["alpine"]}, False),
        ({"label": ["node.name=node-1"]}, True),
        ({"label": ["node.name=node-1", "name=db"]}, False),  # every label must hold
        ({"label": ["name"]}, True),
        ({"scope": ["local"]}, True),
        ({"scope": ["swarm"]}, False),
        ({"event": ["start"], "node": ["node-2"]}, False),  # keys are ANDed
        ({"network": ["mynet"]}, False),
    ],
)
def test_container_event_filters(filters: dict[str, list[str]], expected: bool) -> None:
    assert event_matches(container_event(), filters) is expected


def test_container_filter_does_not_pick_network_events_of_that_container() -> None:
    # As in Docker: the filter compares with the event's actor (the network here).
    assert not event_matches(network_event(), {"container": ["abc123def456"]})
    assert event_matches(network_event(), {"network": ["mynet"], "type": ["network"]})
    assert event_matches(network_event(), {"network": ["net9"]})


def test_prefix_actions_match_with_their_detail() -> None:
    event = container_event(action="health_status: healthy")
    assert event_matches(event, {"event": ["health_status"]})
    assert not event_matches(container_event(action="exec_die"), {"event": ["exec"]})


def test_swarm_events_filter_by_type_and_node() -> None:
    event = {"Type": "swarm", "Action": "engine_connect", "status": "engine_connect",
             "from": "swarm node:node-0", "scope": "local",
             "Actor": {"ID": "x", "Attributes": {"node.name": "node-0", "node.id": "x"}},
             "timeNano": 1}
    assert event_matches(event, {"type": ["swarm"], "node": ["node-0"]})
    assert not event_matches(event, {"type": ["container"]})
    assert event_matches(event, {"event": ["engine_connect"]})


@pytest.mark.parametrize(
    ("raw", "nanos"),
    [
        ("1700000000", 1700000000_000000000),
        ("1700000000.5", 1700000000_500000000),
        ("1700000000.000000001", 1700000000_000000001),
        ("1700000000.123456789", 1700000000_123456789),
        ("2023-11-14T22:13:20Z", 1700000000_000000000),
        ("2023-11-14T22:13:20.25+00:00", 1700000000_250000000),
    ],
)
def test_parse_event_time(raw: str, nanos: int) -> None:
    assert parse_event_time(raw, "since") == nanos


def test_parse_event_time_rejects_garbage() -> None:
    assert parse_event_time(None, "since") is None
    assert parse_event_time("", "until") is None
    with pytest.raises(HTTPError) as err:
        parse_event_time("yesterday", "until")
    assert err.value.status == 400


def test_event_time_prefers_nanoseconds() -> None:
    assert event_time({"timeNano": 5, "time": 1}) == 5
    assert event_time({"time": 2}) == 2_000_000_000


def test_since_param_is_exact() -> None:
    assert since_param(1700000000_000000001) == "1700000000.000000001"
    assert parse_event_time(since_param(1700000000_123456789), "since") == 1700000000_123456789


def test_seen_events_drops_replays_only() -> None:
    seen = SeenEvents(limit=3)
    first = container_event()
    assert seen.first_time(first)
    assert not seen.first_time(dict(first))  # the inclusive `since` replays it
    other = container_event(action="die")
    assert seen.first_time(other)
    same_time_other_actor = container_event(cid="fff")
    assert seen.first_time(same_time_other_actor)
    for i in range(3):
        assert seen.first_time({**first, "timeNano": i})
    assert seen.first_time(first)  # forgotten once the window moved on: bounded memory
