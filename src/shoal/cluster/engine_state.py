"""An engine's state machine, its settings, and what it tells its cluster."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shoal.cluster.records import Container
from shoal.telemetry import NO_TELEMETRY, EngineTelemetry

if TYPE_CHECKING:
    from shoal.cluster.engine import Engine


T = TypeVar("T")


class EngineState(enum.Enum):
    PENDING = "Pending"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    DISCONNECTED = "Disconnected"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The manage flags that shape every engine's loops, and where engines report."""

    refresh_min: float = 30.0
    refresh_max: float = 60.0
    failure_retry: int = 3
    overcommit: float = 0.05
    #: A health probe unanswered this long means a hung daemon (ordinary calls wait 30 s).
    probe_timeout: float = 5.0
    telemetry: EngineTelemetry = field(default=NO_TELEMETRY, compare=False, repr=False)


_UNSET = object()


class _Told:
    """A field whose every change is told to the object's `listener` (`engine_touched`).
    It has no `__get__`, so reads stay plain instance-dict reads."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __set__(self, obj: Any, value: Any) -> None:
        state = obj.__dict__
        unchanged = state.get(self.name, _UNSET) == value
        state[self.name] = value
        listener = state.get("listener")
        if listener is not None and not unchanged:
            listener.engine_touched(obj, self.name)


def told_fields(*names: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: assignments of NAMES reach the listener, whoever makes them, so
    views kept from an engine's fields (the `/info` node blocks) hear of every change
    instead of comparing every engine's fields on every read."""

    def decorate(cls: type[T]) -> type[T]:
        for name in names:
            setattr(cls, name, _Told(name))
        return cls

    return decorate


class EngineListener(Protocol):
    """What an engine tells its cluster; the cluster keeps cross-engine indexes from it."""

    def engine_validated(self, engine: Engine) -> str | None: ...

    def engine_state_changed(self, engine: Engine, action: str) -> None: ...

    def container_changed(
        self, engine: Engine, old: Container | None, new: Container | None
    ) -> None: ...

    def engine_event(self, engine: Engine, event: dict[str, Any]) -> None: ...

    def images_changed(self, engine: Engine) -> None: ...

    def engine_touched(self, engine: Engine, field: str) -> None: ...

    def duplicate_copies(
        self, engine: Engine, listing: list[dict[str, Any]], *, newer_only: bool
    ) -> list[str]: ...
