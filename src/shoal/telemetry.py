"""What the API, scheduler, engines, watchdog and election report as they work.

Each part is handed an observer (one small protocol per part) instead of importing the
metrics module: the cluster never depends on the ops listener, and without
``--metrics-addr`` every call lands on `NoTelemetry`, which does nothing.
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = [
    "MOVE_OUTCOMES",
    "NO_TELEMETRY",
    "UNKNOWN_ROUTE",
    "ApiTelemetry",
    "EngineTelemetry",
    "LeaderTelemetry",
    "NoTelemetry",
    "SchedulerTelemetry",
    "Telemetry",
    "WatchdogTelemetry",
]

#: The route label of a request that matched no route (one label, never the raw path).
UNKNOWN_ROUTE: Final = "unknown"
#: Watchdog move outcomes, in the order a move goes through them.
MOVE_OUTCOMES: Final = ("started", "succeeded", "failed", "retried")


class ApiTelemetry(Protocol):
    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request answered: its route template, method, status and time to answer."""

    def api_hijack(self, delta: int) -> None:
        """A hijacked stream opened (+1) or closed (-1)."""


class SchedulerTelemetry(Protocol):
    def scheduled(self, seconds: float, failure: str | None) -> None:
        """One placement decision; `failure` is the reason when no node fit."""


class EngineTelemetry(Protocol):
    def engine_refresh_failed(self, node: str, addr: str) -> None:
        """A periodic refresh of the engine failed."""

    def engine_events_reconnect(self, node: str, addr: str) -> None:
        """The engine's event stream broke and is being opened again."""

    def duplicate_removed(self) -> None:
        """A stale copy of a rescheduled container was removed from a returning node."""


class WatchdogTelemetry(Protocol):
    def watchdog_move(self, outcome: str, count: int = 1) -> None:
        """Moves off a failed node reached `outcome` (one of `MOVE_OUTCOMES`)."""

    def duplicate_removed(self) -> None:
        """A copy made while its node came back was removed again."""


class LeaderTelemetry(Protocol):
    def election_won(self) -> None:
        """This manager became the primary."""

    def lock_renewed(self) -> None:
        """The leader lock was renewed (or first confirmed)."""


class Telemetry(
    ApiTelemetry, SchedulerTelemetry, EngineTelemetry, WatchdogTelemetry, LeaderTelemetry,
    Protocol,
):
    """Everything one manager reports."""


class NoTelemetry:
    """Reports nowhere: the default, and what runs without ``--metrics-addr``."""

    __slots__ = ()

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def api_hijack(self, delta: int) -> None:
        pass

    def scheduled(self, seconds: float, failure: str | None) -> None:
        pass

    def engine_refresh_failed(self, node: str, addr: str) -> None:
        pass

    def engine_events_reconnect(self, node: str, addr: str) -> None:
        pass

    def duplicate_removed(self) -> None:
        pass

    def watchdog_move(self, outcome: str, count: int = 1) -> None:
        pass

    def election_won(self) -> None:
        pass

    def lock_renewed(self) -> None:
        pass


#: Stateless, so one instance serves every default.
NO_TELEMETRY: Final[Telemetry] = NoTelemetry()
