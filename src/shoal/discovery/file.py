"""Discovery from a file of addresses, re-read every heartbeat (``file:///path``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.discovery.base import Discovery, DiscoveryError, expand_ranges, parse_entries

__all__ = ["FileDiscovery", "expand_ranges", "parse_file_content"]


def parse_file_content(content: str) -> list[str]:
    """Entries from file text: one per line, ``#`` comments, ranges; raises ValueError."""
    lines: list[str] = []
    for raw in content.strip().split("\n"):
        line = raw.strip()
        if line.startswith("#"):
            continue
        line = line.split("#", 1)[0].strip()
        lines.append(line)
    return parse_entries(lines)


def _describe_os_error(path: str, exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    return f"open {path}: {reason}"


class FileDiscovery(Discovery):
    """Polls ``path`` every ``heartbeat`` seconds; yields entries only when they change."""

    def __init__(self, path: str, heartbeat: float) -> None:
        self.path = path
        self.heartbeat = heartbeat
        self._closed = asyncio.Event()

    async def fetch(self) -> list[str]:
        """Read and parse the file once, off the event loop; raises DiscoveryError."""
        try:
            data = await asyncio.to_thread(Path(self.path).read_bytes)
        except OSError as exc:
            reason = _describe_os_error(self.path, exc)
            raise DiscoveryError(f"failed to read '{self.path}': {reason}") from None
        try:
            return parse_file_content(data.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise DiscoveryError(str(exc)) from None

    async def _sleep(self) -> bool:
        """Wait one heartbeat; False once closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), self.heartbeat)
        return not self._closed.is_set()

    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        current: list[str] | None = None
        try:
            current = await self.fetch()
        except DiscoveryError as exc:
            yield exc
        else:
            yield list(current)
        while await self._sleep():
            try:
                fresh = await self.fetch()
            except DiscoveryError as exc:
                yield exc
                continue
            # Like classic Swarm: an initially empty result equals "nothing yet".
            if fresh != (current or []):
                yield list(fresh)
            current = fresh

    async def close(self) -> None:
        self._closed.set()
