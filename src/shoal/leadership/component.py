"""What leadership changes switch: the API handler every listener uses, and the watchdog."""

from __future__ import annotations

import logging
from typing import Protocol

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import Handler

__all__ = ["Leadership", "PrimaryDuty"]

log = logging.getLogger(__name__)


class PrimaryDuty(Protocol):
    """What runs on the primary only (the watchdog, which reschedules containers)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Leadership:
    """``changed(True)`` installs the primary handler then starts the watchdog;
    ``changed(False)`` installs the replica handler then stops it.

    The handler swap comes first and is synchronous, so a demoted manager routes the
    next request to the primary before anything else happens.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        primary: Handler,
        replica: Handler,
        watchdog: PrimaryDuty | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.primary = primary
        self.replica = replica
        self.watchdog = watchdog
        self._watching = False

    async def changed(self, leader: bool) -> None:
        self.dispatcher.set_handler(self.primary if leader else self.replica)
        if self.watchdog is None:
            return
        if leader and not self._watching:
            self._watching = True
            self.watchdog.start()
        elif not leader and self._watching:
            self._watching = False
            try:
                await self.watchdog.stop()
            except Exception as exc:  # the watchdog's failure must not stop the election
                log.error("stopping the watchdog failed: %s", exc)
