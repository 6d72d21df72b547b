"""The one place where a failure becomes a Docker answer: exception class -> status, message.

Handlers raise; `PrimaryHandler` asks `answer_for` once, for whatever reached it.
"""

from __future__ import annotations

from shoal.api.http import HTTPError
from shoal.cluster.errors import (
    ClusterError,
    Conflict,
    EngineConnectionError,
    EngineError,
    NotFound,
)
from shoal.scheduler.errors import SchedulerError

#: Every exception class the map answers; anything else is a bug (the server's 500).
ANSWERED: tuple[type[Exception], ...] = (HTTPError, ClusterError, SchedulerError)


def answer_for(exc: Exception) -> tuple[int, str]:
    """The status and message Docker (or classic Swarm) answers for `exc`.

    An engine's error keeps the engine's own status and text; an unreachable engine is
    classic Swarm's 500 with the connection's text; no node for a create is a 500 with
    the scheduler's text.
    """
    match exc:
        case HTTPError():
            return exc.status, exc.message
        case NotFound():
            return 404, str(exc)
        case Conflict():
            return 409, str(exc)
        case EngineError():
            return exc.status, exc.message
        case EngineConnectionError() | SchedulerError() | ClusterError():
            return 500, str(exc)
    return 500, str(exc) or type(exc).__name__
