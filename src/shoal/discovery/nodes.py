"""Static discovery from a comma-separated address list (``nodes://a:1,b:2``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shoal.discovery.base import Discovery, DiscoveryError, expand_ranges, validate_entry

__all__ = ["NodesDiscovery", "parse_nodes"]


def parse_nodes(spec: str) -> list[str]:
    """Turn ``a:1,10.0.0.[1:3]:2375`` into entries; errors carry classic Swarm's hint."""
    entries: list[str] = []
    for item in spec.split(","):
        for entry in expand_ranges(item):
            try:
                entries.append(validate_entry(entry))
            except ValueError as exc:
                raise DiscoveryError(
                    f"{exc}, please check you are using the correct discovery (missing token:// ?)"
                ) from None
    return entries


class NodesDiscovery(Discovery):
    """Sends its fixed list once, then waits until closed."""

    def __init__(self, spec: str) -> None:
        self.entries = parse_nodes(spec)
        self._closed = asyncio.Event()

    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        if self._closed.is_set():
            return
        yield list(self.entries)
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()
