"""The event history's bounds: count and encoded bytes, oldest dropped first."""

from __future__ import annotations

import json
from typing import Any

from shoal.cluster.events import (
    HISTORY,
    HISTORY_BYTES,
    EventBus,
    EventHistory,
    SeenEvents,
    encoded_size,
    event_key,
)


def event(n: int, payload: str = "") -> dict[str, Any]:
    action = f"exec_create: {payload}" if payload else "start"
    return {"Type": "container", "Action": action, "status": action, "id": f"c{n}",
            "timeNano": n}


def numbers(history: EventHistory) -> list[int]:
    return [int(e["timeNano"]) for e in history]


def test_size_is_the_encoded_line() -> None:
    e = event(1, "é" * 10)
    assert encoded_size(e) == len(json.dumps(e, separators=(",", ":"))) + 1


def test_defaults() -> None:
    history = EventBus().history
    assert (history.max_events, history.max_bytes) == (HISTORY, HISTORY_BYTES)
    assert HISTORY_BYTES == 16 << 20


def test_count_bound_drops_the_oldest() -> None:
    history = EventHistory(max_events=3, max_bytes=1 << 20)
    for n in range(5):
        history.append(event(n))
    assert numbers(history) == [2, 3, 4]
    assert history.size == sum(encoded_size(event(n)) for n in (2, 3, 4))


def test_byte_bound_drops_the_oldest_until_it_fits() -> None:
    small = encoded_size(event(0))
    history = EventHistory(max_events=100, max_bytes=10 * small)
    for n in range(10):
        history.append(event(n))
    assert len(history) == 10 and history.size <= history.max_bytes
    big = event(10, "x" * (4 * small))  # costs about five small ones
    history.append(big)
    assert history.size <= history.max_bytes
    assert numbers(history)[-1] == 10
    assert numbers(history) == list(range(10 - len(history) + 1, 11))
    assert history.size == sum(encoded_size(e) for e in history)


def test_event_bigger_than_the_bound_is_not_kept_but_is_delivered() -> None:
    bus = EventBus(EventHistory(max_events=10, max_bytes=1000))
    sub = bus.subscribe()
    bus.publish(event(1))
    bus.publish(event(2, "x" * 5000))
    assert numbers(bus.history) == []
    assert bus.history.size == 0
    delivered = [sub.queue.get_nowait(), sub.queue.get_nowait()]
    assert [e["timeNano"] for e in delivered] == [1, 2]
    bus.publish(event(3))
    assert numbers(bus.history) == [3]


def test_huge_events_do_not_accumulate() -> None:
    # Four 5 MiB exec commands (each event repeats it in Action and status): one is kept.
    history = EventHistory()
    for n in range(4):
        history.append(event(n, "y" * (5 << 20)))
    assert history.size <= HISTORY_BYTES
    assert len(history) == 1 and numbers(history) == [3]


def test_resume_keys_do_not_hold_big_actions() -> None:
    # The per-engine replay filter remembers 1,024 keys; a key must not pin a huge action.
    big = event(1, "z" * (1 << 20))
    key = event_key(big)
    assert sum(len(part) for part in key[1:]) < 512
    assert key == event_key(dict(big))
    assert key != event_key(event(1, "z" * ((1 << 20) - 1) + "y"))
    assert event_key(event(1))[2] == "start"
    seen = SeenEvents(limit=3)
    assert seen.first_time(big) and not seen.first_time(dict(big))
