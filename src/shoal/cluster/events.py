"""Fan-out of cluster events to `/events` subscribers, with a short history for `since`."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

log = logging.getLogger(__name__)

SUBSCRIBER_LIMIT = 10_000
HISTORY = 4096
# An event can be huge (an engine's `exec_create` action holds the whole command line),
# so the history is bounded in bytes too, or a few such events would stay in memory.
HISTORY_BYTES = 16 << 20


class Subscription:
    """One `/events` listener: a bounded queue; a listener that falls behind is dropped."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_LIMIT)
        self.dropped = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._bus.unsubscribe(self)


def encoded_size(event: dict[str, Any]) -> int:
    """Bytes the event takes as `/events` sends it (the measure of the history's bound)."""
    return len(json.dumps(event, separators=(",", ":"), default=str)) + 1


class EventHistory:
    """The last events, oldest first, within a count and an encoded-size bound.

    The oldest are dropped first; an event bigger than the whole byte bound is not kept.
    """

    def __init__(self, max_events: int = HISTORY, max_bytes: int = HISTORY_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self.size = 0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (event for event, _ in self._events)

    def append(self, event: dict[str, Any]) -> None:
        size = encoded_size(event)
        self._events.append((event, size))
        self.size += size
        while self._events and (
            len(self._events) > self.max_events or self.size > self.max_bytes
        ):
            self.size -= self._events.popleft()[1]


class EventBus:
    """Every engine's events and shoal's own, delivered in arrival order to each subscriber."""

    def __init__(self, history: EventHistory | None = None) -> None:
        self._subscribers: set[Subscription] = set()
        self.history = history if history is not None else EventHistory()

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        self.history.append(event)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("dropping a slow events subscriber")
                sub.dropped = True
                self._subscribers.discard(sub)
                self._end(sub)

    def close(self) -> None:
        for sub in list(self._subscribers):
            self._end(sub)
        self._subscribers.clear()

    @staticmethod
    def _end(sub: Subscription) -> None:
        try:
            sub.queue.put_nowait(None)
        except asyncio.QueueFull:
            # Make room for the end marker: the subscriber is being cut off anyway.
            sub.queue.get_nowait()
            sub.queue.put_nowait(None)


# Longer actions are remembered by digest: `exec_create: <command>` can be megabytes.
_KEY_ACTION_LIMIT = 256


def event_key(event: dict[str, Any]) -> tuple[int, str, str, str]:
    """What tells two engine events apart: nanosecond time, type, action, actor."""
    actor = event.get("Actor") or {}
    action = str(event.get("Action") or event.get("status") or "")
    if len(action) > _KEY_ACTION_LIMIT:
        digest = hashlib.blake2b(action.encode(errors="surrogatepass"), digest_size=16)
        action = f"{action[:64]}#{len(action)}#{digest.hexdigest()}"
    return (
        int(event.get("timeNano") or 0),
        str(event.get("Type") or ""),
        action,
        str(actor.get("ID") or event.get("id") or ""),
    )


def since_param(nano: int) -> str:
    """`seconds.nanoseconds`, exact: a float would round past the last event seen."""
    return f"{nano // 1_000_000_000}.{nano % 1_000_000_000:09d}"


class SeenEvents:
    """The last events of one engine's stream, so a `since` resume never delivers one twice.

    Docker's `since` is inclusive and a daemon may publish events slightly out of time
    order, so "older than the last one" cannot be the test: the event itself is looked up.
    """

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._order: collections.deque[tuple[int, str, str, str]] = collections.deque()
        self._keys: set[tuple[int, str, str, str]] = set()

    def first_time(self, event: dict[str, Any]) -> bool:
        key = event_key(event)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._limit:
            self._keys.discard(self._order.popleft())
        return True
