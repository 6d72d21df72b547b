"""The health half of `Engine` (a mixin): probes, failure counting and recovery.

Kept apart from the engine's connection and lifecycle so each module stays small.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

from shoal.cluster.client import READ_TIMEOUT
from shoal.cluster.engine_cache import EngineCache
from shoal.cluster.engine_state import EngineState, told_fields
from shoal.cluster.errors import EngineConnectionError, EngineError, EngineFailure
from shoal.logs import fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from shoal.cluster.client import EngineAddress, EngineClient
    from shoal.cluster.engine_state import EngineSettings

log = logging.getLogger("shoal.cluster.engine")


@told_fields("state", "error", "updated_at", "failure_count", "specs")
class EngineHealth(EngineCache):
    """Health probes, the Healthy/Unhealthy flips and the recovery of a returning engine."""

    address: EngineAddress
    client: EngineClient
    settings: EngineSettings
    clock: Callable[[], float]
    state: EngineState
    error: str
    updated_at: float
    failure_count: int
    _recovery: asyncio.Task[None] | None
    _answering: bool

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def addr(self) -> str:
        raise NotImplementedError

    @property
    def log_fields(self) -> dict[str, dict[str, object]]:
        raise NotImplementedError

    @property
    def healthy(self) -> bool:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        raise NotImplementedError

    def _answered(self) -> None:
        raise NotImplementedError

    async def update_specs(self) -> None:
        raise NotImplementedError

    async def _probe_loop(self) -> None:
        """Probe a Healthy engine once per refresh interval, apart from the refresh loop
        (whose calls may each wait the full ordinary timeout on a hung daemon)."""
        while self.settings.probe_timeout > 0:
            spread = max(self.settings.refresh_max - self.settings.refresh_min, 0.0)
            await asyncio.sleep(self.settings.refresh_min + random.random() * spread)
            if self.state is EngineState.HEALTHY:
                await self.probe()

    async def probe(self) -> bool:
        """`GET /_ping` within the probe timeout; True when the engine answered.

        A daemon that accepts connections but does not answer (frozen, deadlocked) is
        flagged Unhealthy at once, not after --engine-failure-retry ordinary timeouts
        of 30 s each; a refused connection counts as one failure, like any call's.
        """
        timeout = self.settings.probe_timeout or READ_TIMEOUT
        try:
            await self.client.get("/_ping", versioned=False, timeout=timeout)
        except EngineError:
            return True  # it answered, if oddly: only connection failures count
        except EngineConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError) and self.state is EngineState.HEALTHY:
                log.warning(
                    "Engine %s did not answer a health probe within %gs", self.name, timeout
                )
                self.failure_count = max(self.failure_count, self.settings.failure_retry - 1)
            self.record_failure(str(exc))
            return False
        self._answered()
        return True

    def record_success(self) -> None:
        self.updated_at = self.clock()
        self.error = ""
        if self.state is EngineState.UNHEALTHY:
            # Not Healthy yet: stale copies of rescheduled containers must go first.
            self._start_recovery()
            return
        self.failure_count = 0

    def _start_recovery(self) -> asyncio.Task[None]:
        if self._recovery is None or self._recovery.done():
            self._recovery = self._spawn(self._recover(), f"recover {self.address.entry}")
        return self._recovery

    async def recover(self) -> bool:
        """Probe an unhealthy engine and, if it answers, bring it back; True when Healthy.

        Unlike classic Swarm (which flagged the engine healthy, then cleaned up in the
        background, so two copies ran side by side: its #1810/#1812), copies of
        containers that were rescheduled elsewhere are removed before the flip.
        """
        if self.state is EngineState.UNHEALTHY:
            # asyncio.wait: a cancelled caller must not cancel the shared recovery.
            await asyncio.wait({self._start_recovery()})
        return self.healthy

    async def _recover(self) -> None:
        retries = self.failure_count
        try:
            await self.update_specs()
            self._answering = True
            listing = await self.remove_duplicates(newer_only=False)
            await self.refresh_containers(listing)
            await self.refresh_images()
            await self.refresh_networks()
            await self.refresh_volumes()
        except (EngineFailure, ValueError) as exc:
            log.debug("engine %s is not back yet: %s", self.addr, exc, extra=self.log_fields)
            return
        finally:
            self._answering = False
        if self.state is not EngineState.UNHEALTHY:
            return
        log.info("Engine came back to life after %d retries. Hooray! (%s)", retries, self.name,
                 extra=self.log_fields)
        self.state = EngineState.HEALTHY
        self.failure_count = 0
        self.listener.engine_state_changed(self._listened(), "engine_reconnect")
        self.wake()

    async def remove_duplicates(self, *, newer_only: bool) -> list[dict[str, Any]]:
        """Remove local copies of containers whose swarm ID another engine runs; the
        listing without them.

        Read from a light listing, before the cache is refreshed, so a stale copy is
        never cached (nor listed) beside the live one.
        """
        listing = await self.list_containers()
        removed: set[str] = set()
        for cid in self.listener.duplicate_copies(self._listened(), listing, newer_only=newer_only):
            try:
                await self.call(
                    "DELETE", f"/containers/{cid}", params={"force": "1", "v": "1"}
                )
            except EngineError as exc:
                if exc.status != 404:
                    log.error("Failed to remove duplicate container %s on %s: %s",
                              cid, self.name, exc, extra=fields(container=cid, node=self.name))
                    continue
            log.info("Removed duplicate container %s from %s", cid, self.name,
                     extra=fields(container=cid, node=self.name))
            self.settings.telemetry.duplicate_removed()
            self.forget_container(cid)
            removed.add(cid)
        return [item for item in listing if item.get("Id") not in removed]

    def record_failure(self, error: str) -> None:
        self.failure_count += 1
        self.error = error
        self.updated_at = self.clock()
        if (
            self.state is EngineState.HEALTHY
            and self.failure_count >= self.settings.failure_retry
        ):
            log.error(
                "Flagging engine as unhealthy. Connect failed %d times (%s)",
                self.failure_count,
                self.name,
                extra=self.log_fields,
            )
            self.state = EngineState.UNHEALTHY
            self.listener.engine_state_changed(self._listened(), "engine_disconnect")
