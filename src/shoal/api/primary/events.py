"""`GET /events`: the cluster's event bus as one engine's stream, filtered as Docker filters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from shoal.api.http import HTTPError, Request, StreamResponse
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.filters import match_labels, parse_filters
from shoal.cluster.events import EventBus

NANO = 1_000_000_000
#: Filter keys Docker matches by prefix against the actor's ID or `name` attribute.
FUZZY_EVENT_KEYS = ("container", "daemon", "plugin", "volume", "network", "service", "secret",
                    "config")
#: `event` values Docker matches by prefix (their actions carry a `: detail` suffix).
PREFIX_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})


def parse_event_time(value: str | None, name: str) -> int | None:
    """`since`/`until` in nanoseconds: Docker's `seconds[.nanoseconds]`, or RFC 3339.

    Integer nanoseconds, because a float cannot tell apart two events of the same
    second the way the engines' `timeNano` does.
    """
    if value is None or value == "":
        return None
    seconds, dot, fraction = value.partition(".")
    if seconds.lstrip("-").isdigit() and (not dot or fraction.isdigit()):
        nanos = int((fraction or "0")[:9].ljust(9, "0"))
        sign = -1 if seconds.startswith("-") else 1
        return int(seconds) * NANO + sign * nanos
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"invalid value for {name}: {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp()) * NANO + stamp.microsecond * 1000


def _strip_tag(image: str) -> str:
    """Docker's `stripTag`: the familiar repository name without tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def event_matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's `/events` filter (daemon/events/filter.go), plus shoal's `node`.

    Keys are ANDed, values of one key ORed. As in Docker, `container=x` and its kin
    compare with the actor of any event type, by exact value or prefix; `label` needs
    every `key[=value]` given. `node` takes a node name or engine ID.
    """
    if not filters:
        return True
    actor = event.get("Actor") or {}
    attrs: dict[str, str] = actor.get("Attributes") or {}
    actor_id = str(actor.get("ID") or event.get("id") or "")
    name = str(attrs.get("name", ""))
    kind = str(event.get("Type") or "")
    action = str(event.get("Action") or event.get("status") or "")

    def exact(key: str, *sources: str) -> bool:
        values = filters.get(key)
        return not values or any(s in values for s in sources)

    def fuzzy(key: str, *sources: str) -> bool:
        values = filters.get(key)
        if not values:
            return True
        return any(s == v or (s and s.startswith(v)) for s in sources for v in values)

    if PREFIX_ACTIONS & set(filters.get("event", ())):
        if not fuzzy("event", action):
            return False
    elif not exact("event", action):
        return False
    if not exact("type", kind) or not exact("scope", str(event.get("scope", ""))):
        return False
    if not all(fuzzy(key, actor_id, name) for key in FUZZY_EVENT_KEYS):
        return False
    image = str(attrs.get("name" if kind == "image" else "image", ""))
    if not exact("image", actor_id, image, _strip_tag(actor_id), _strip_tag(image)):
        return False
    if not exact("node", str(attrs.get("node.name", "")), str(attrs.get("node.id", ""))):
        return False
    return match_labels(attrs, filters.get("label", []))


def event_time(event: dict[str, Any]) -> int:
    """An event's time in nanoseconds (old engines send only seconds)."""
    nano = event.get("timeNano")
    if nano:
        return int(nano)
    return int(event.get("time") or 0) * NANO


async def event_stream(
    bus: EventBus, since: int | None, until: int | None, filters: dict[str, list[str]]
) -> AsyncIterator[bytes]:
    """Past events from the bus history (with `since` or `until`, as Docker replays its
    buffer), then live ones until `until`; each once, in arrival order."""
    # Subscribe and copy the history with no await between: nothing missed or doubled.
    subscription = bus.subscribe()
    backlog: list[dict[str, Any]] = []
    if since is not None or until is not None:
        low = since or 0
        backlog = [
            e
            for e in list(bus.history)
            if low <= event_time(e) and (until is None or event_time(e) <= until)
        ]
    try:
        yield b""
        for event in backlog:
            if event_matches(event, filters):
                yield _encode_event(event)
        if until is not None and until <= time.time_ns():
            return
        iterator = subscription.__aiter__()
        while True:
            timeout = None if until is None else max(until - time.time_ns(), 0) / NANO
            try:
                event = await asyncio.wait_for(iterator.__anext__(), timeout)
            except (StopAsyncIteration, TimeoutError):
                return
            if event_matches(event, filters):
                yield _encode_event(event)
    finally:
        subscription.close()


def _encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


async def events(ctx: ApiContext, request: Request, params: Params) -> StreamResponse:
    since = parse_event_time(request.arg("since"), "since")
    until = parse_event_time(request.arg("until"), "until")
    if since is not None and until is not None and until < since:
        raise HTTPError(
            400,
            f"`since` time ({request.arg('since')}) cannot be after "
            f"`until` time ({request.arg('until')})",
        )
    filters = parse_filters(request.arg("filters"))
    return StreamResponse(200, event_stream(ctx.cluster.bus, since, until, filters))
