"""Leader election over a LockStore: the candidate and follower loops of one manager.

The invariant that matters: this manager stops acting as primary *before* its lock can
expire in the store, so two managers never serve writes at once. Every successful
``renew()`` proves the lock stays ours for ``lock.guarantee`` seconds counted from when
the call was sent; the candidate demotes itself once half of that has passed without a
newer proof, whether or not the store answers (the renew call is cut off at that
deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from shoal.leadership.store import LockLost, LockStore
from shoal.telemetry import NO_TELEMETRY, LeaderTelemetry

__all__ = ["Election", "Transition"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of this manager's leadership, timestamped (wall clock, seconds)."""

    leader: bool
    time: float
    reason: str


class Election:
    """Campaigns for the lock and follows its value; reports changes through ``on_change``.

    ``on_change(True)`` runs when this manager becomes primary, ``on_change(False)`` when
    it stops; it is awaited, and must swap the API handler before its first await.
    ``retry`` is the pause after a store error.
    """

    def __init__(
        self,
        lock: LockStore,
        advertise: str,
        on_change: Callable[[bool], Awaitable[None]],
        retry: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        telemetry: LeaderTelemetry = NO_TELEMETRY,
    ) -> None:
        self.lock = lock
        self.telemetry = telemetry
        self.advertise = advertise
        self.on_change = on_change
        self.retry = retry
        self.leader = False
        self.transitions: list[Transition] = []
        self._monotonic = monotonic
        self._wall = wall
        self._elected: str | None = None
        self._known = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- state seen by the API ------------------------------------------------------
    @property
    def primary(self) -> str | None:
        """The primary to forward to: None while unknown or while it names us but we are
        not (or no longer) the leader, so a demoted manager never serves writes itself."""
        if self.leader:
            return self.advertise
        if self._elected == self.advertise:
            return None
        return self._elected

    def role(self) -> tuple[str, str | None]:
        """("primary", None) or ("replica", primary address or None)."""
        return ("primary", None) if self.leader else ("replica", self.primary)

    async def wait_primary(self) -> str:
        """The primary's address, waiting until one is known."""
        while True:
            primary = self.primary
            if primary is not None:
                return primary
            self._known.clear()
            await self._known.wait()

    def snapshot(self) -> dict[str, Any]:
        """Role, primary and the transition log, for the debug endpoint and tests."""
        role, primary = self.role()
        return {
            "role": role,
            "primary": primary,
            "advertise": self.advertise,
            "transitions": [asdict(t) for t in self.transitions],
        }

    def _set_elected(self, value: str | None) -> None:
        if value and value != self._elected and value != self.advertise:
            log.info("New leader elected: %s", value)
        self._elected = value or None
        self._known.set()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._campaign(), name="leader candidate"),
            asyncio.create_task(self._follow(), name="leader follower"),
        ]

    async def stop(self) -> None:
        """Stop both loops; a leader steps down and releases the lock (bounded)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._tasks = []
        if self.leader:
            await self._step_down("shutting down")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lock.release(), 2)

    # -- candidate ------------------------------------------------------------------
    async def _campaign(self) -> None:
        while True:
            try:
                await self.lock.acquire()
                # A fresh renewal gives a proof whose start time we know.
                sent = self._monotonic()
                async with asyncio.timeout(self.lock.guarantee / 2):
                    await self.lock.renew()
                self.telemetry.lock_renewed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _reraise_cancellation()
                log.error("Leader Election: %s", exc or type(exc).__name__)
                await self._release_quietly()
                await asyncio.sleep(self.retry)
                continue
            await self._lead(sent)
            await self._release_quietly()

    async def _lead(self, confirmed: float) -> None:
        """Hold leadership while renewals keep proving the lock ours; return when lost."""
        guarantee = self.lock.guarantee
        interval = guarantee / 6
        deadline = confirmed + guarantee / 2
        await self._step_up()
        reason = "renewal deadline passed"
        next_at = confirmed + interval
        while True:
            now = self._monotonic()
            if next_at > now:
                await asyncio.sleep(min(next_at, deadline) - now)
            sent = self._monotonic()
            if sent >= deadline:
                break
            try:
                async with asyncio.timeout(deadline - sent):
                    await self.lock.renew()
            except LockLost as exc:
                reason = f"lock lost: {exc}" if str(exc) else "lock lost"
                break
            except Exception as exc:
                _reraise_cancellation()
                if self._monotonic() >= deadline:
                    break
                log.warning("Leader Election: renewal failed: %s", exc or type(exc).__name__)
                next_at = self._monotonic() + min(interval, 0.5)
                continue
            self.telemetry.lock_renewed()
            deadline = sent + guarantee / 2
            next_at = sent + interval
        await self._step_down(reason)

    async def _step_up(self) -> None:
        self.leader = True
        self.transitions.append(Transition(True, self._wall(), "lock acquired"))
        log.info("Leader Election: Cluster leadership acquired")
        self.telemetry.election_won()
        self._known.set()
        await self.on_change(True)

    async def _step_down(self, reason: str) -> None:
        self.leader = False
        self.transitions.append(Transition(False, self._wall(), reason))
        log.info("Leader Election: Cluster leadership lost (%s)", reason)
        await self.on_change(False)

    async def _release_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lock.release(), max(self.lock.guarantee / 4, 0.5))

    # -- follower -------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                async for value in self.lock.watch():
                    self._set_elected(value)
                log.error(
                    "Leader Election: watch leader channel closed, the store may be unavailable..."
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "Leader Election: watch leader channel closed, the store may be "
                    "unavailable... (%s)",
                    exc or type(exc).__name__,
                )
            await asyncio.sleep(self.retry)


def _reraise_cancellation() -> None:
    """On Python 3.11 `asyncio.timeout` can turn a cancel() that lands as the timeout fires
    into TimeoutError; a loop that caught it must still stop when it was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
