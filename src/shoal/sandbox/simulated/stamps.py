"""IDs and timestamps of simulated records, the way dockerd writes them.

A leaf module: the records, the documents rendered from them and the engine all use these,
so none of them has to import another just for a helper.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

__all__ = ["ZERO_TIME", "digest", "docker_time"]

ZERO_TIME = "0001-01-01T00:00:00Z"


def digest(*parts: object) -> str:
    """A stable 64-hex ID from the parts, so a run is reproducible for a seed."""
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def docker_time(nano: int) -> str:
    """RFC 3339 with nanoseconds, as dockerd writes `Created` and `StartedAt`."""
    if nano <= 0:
        return ZERO_TIME
    seconds, frac = divmod(nano, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"
