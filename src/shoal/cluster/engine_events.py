"""Following an engine's `/events` stream to keep its cache current.

The stream is resumed with `since` after any break, so no event is lost; events the
resume replays are recognised and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from shoal.cluster.engine_state import EngineState
from shoal.cluster.errors import EngineConnectionError, EngineError, EngineFailure
from shoal.cluster.events import SeenEvents, since_param
from shoal.logs import fields

if TYPE_CHECKING:
    from shoal.cluster.engine import Engine

log = logging.getLogger(__name__)

#: Container events that change nothing shoal caches (any other is followed by an inspect).
QUIET_EVENTS = frozenset(
    {
        "top",
        "resize",
        "export",
        "exec_start",
        "exec_detach",
        "exec_die",
        "attach",
        "detach",
        "extract-to-dir",
        "copy",
        "archive-path",
    }
)


def _actor(event: dict[str, Any]) -> str:
    return str((event.get("Actor") or {}).get("ID") or event.get("id") or "")


def destroyed_later(batch: list[dict[str, Any]]) -> dict[str, int]:
    """Container ID -> position of its `destroy` event in BATCH."""
    return {
        _actor(e): i
        for i, e in enumerate(batch)
        if (e.get("Type") or "container") == "container"
        and str(e.get("Action") or e.get("status") or "").startswith("destroy")
    }


class EventMonitor:
    """One engine's event stream: each event refreshes what it changed, then is published."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: `timeNano` of the newest event handled: where a resumed stream starts.
        self.last_nano = 0
        self.seen = SeenEvents()

    async def run(self) -> None:
        """Follow `/events`, resuming from the last event seen after any break."""
        failures = 0
        while True:
            if self.engine.state is EngineState.UNHEALTHY and not await self.engine.recover():
                # No stream while unhealthy: replayed events would cache stale copies.
                failures += 1
                await asyncio.sleep(min(failures, 10))
                continue
            params = {"since": since_param(self.last_nano)}
            try:
                async for batch in self.engine.client.stream_batches("/events", params=params):
                    if failures:
                        failures = 0
                    self.engine.record_success()
                    doomed = destroyed_later(batch)
                    for i, event in enumerate(batch):
                        await self.handle(event, skip_refresh=doomed.get(_actor(event), -1) > i)
                # A clean end of stream: the daemon is going away.
                raise EngineConnectionError(f"event stream of {self.engine.addr} ended")
            except EngineConnectionError as exc:
                failures += 1
                self.engine.record_failure(str(exc))
            except EngineError as exc:
                failures += 1
                log.warning("event stream of %s failed: %s", self.engine.name, exc,
                            extra=self.engine.log_fields)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the monitor for good
                failures += 1
                log.exception("event monitor of %s crashed; restarting", self.engine.name,
                              extra=self.engine.log_fields)
            reported = self.engine
            reported.settings.telemetry.engine_events_reconnect(reported.name, reported.addr)
            await asyncio.sleep(min(failures, 10) if failures > 1 else 0.5)
            if self.engine.state is EngineState.PENDING:
                # A changed daemon ID: keep probing so the error stays current.
                with contextlib.suppress(EngineFailure, ValueError):
                    await self.engine.update_specs()

    async def handle(self, event: dict[str, Any], *, skip_refresh: bool = False) -> None:
        """Refresh what EVENT changed, then publish it. SKIP_REFRESH: the container is
        destroyed later in the same batch, so its inspect would only delay the removal
        (behind a build's dozen events, long enough for a list to show a gone container)."""
        if not (event.get("Action") or event.get("status")):
            return  # not an event: e.g. the fragment of one cut off by a dying engine
        if not self.seen.first_time(event):
            return  # replayed by a `since` resume: already handled and published
        nano = int(event.get("timeNano") or 0)
        if nano > self.last_nano:
            self.last_nano = nano
        kind = event.get("Type") or "container"
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        oid = _actor(event)
        try:
            if kind == "container" and oid:
                base = action.split(":", 1)[0]
                if base == "destroy":
                    self.engine.forget_container(oid)
                elif base not in QUIET_EVENTS and not skip_refresh:
                    await self.engine.refresh_container(oid)
                if base == "commit":
                    await self.engine.refresh_images()
            elif kind == "image":
                await self.engine.refresh_images()
            elif kind == "network" and oid:
                await self.engine.refresh_network(oid)
                if action in ("connect", "disconnect"):
                    cid = (actor.get("Attributes") or {}).get("container")
                    if cid:
                        await self.engine.refresh_container(cid)
            elif kind == "volume":
                await self.engine.refresh_volumes()
            elif kind == "daemon" and action == "reload":
                await self.engine.update_specs()
        except EngineError as exc:
            log.debug("refresh after event %s/%s failed: %s", kind, action, exc,
                      extra=fields(node=self.engine.name, addr=self.engine.addr, **{kind: oid}))
        self.engine.listener.engine_event(self.engine, event)
