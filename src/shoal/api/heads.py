"""Reading request heads off a connection: pushed-back bytes, bare-LF heads, deadlines."""

from __future__ import annotations

import asyncio
import math
from typing import Final

from shoal.api.http import HEAD_LIMIT

_BLANK: Final = (b"\r\n", b"\n")


class HeadTimeout(Exception):
    """The request head did not arrive in time; the connection has been aborted."""


class HeadReader:
    """Reads request heads from one connection, serving bytes pushed back first.

    A streamed response watches for the client leaving by reading one byte; when that byte
    is the start of the next request it is pushed back here (StreamReader has no public
    unread). Heads are read line by line, so a bare-LF head ends at its empty line as a
    CRLF head does instead of waiting for a CRLFCRLF that never comes.

    Deadlines cost nothing per request: moving one is an assignment, and a single timer
    per connection, re-armed only when it fires early, aborts the connection when the
    current deadline has passed.
    """

    __slots__ = ("_deadline", "_expired", "_loop", "_pending", "_timer", "_transport", "reader")

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.WriteTransport) -> None:
        self.reader = reader
        self._transport = transport
        self._pending = b""
        self._loop = asyncio.get_running_loop()
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def unread(self, data: bytes) -> None:
        """Put `data` back in front of what the connection delivers next."""
        self._pending = data + self._pending

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        """Drop the timer (the connection is done)."""
        self._deadline = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, seconds: float) -> None:
        if not seconds:
            self._deadline = math.inf
            return
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._deadline == math.inf:
            return
        if self._loop.time() >= self._deadline:
            self._expired = True
            self._transport.abort()  # the pending read ends with IncompleteReadError
        else:
            self._timer = self._loop.call_at(self._deadline, self._fire)

    async def _line(self) -> bytes:
        pending = self._pending
        if pending:
            end = pending.find(b"\n")
            if end >= 0:
                self._pending = pending[end + 1 :]
                return pending[: end + 1]
            self._pending = b""
            return pending + await self.reader.readuntil(b"\n")
        return await self.reader.readuntil(b"\n")

    async def read_head(self, first_line_timeout: float, head_timeout: float) -> bytes:
        """The next head, through its empty line.

        Its first line must come within `first_line_timeout`, the rest within
        `head_timeout` after that (0: no limit). Raises HeadTimeout, IncompleteReadError at
        EOF (what was read in `partial`) and LimitOverrunError past HEAD_LIMIT.
        """
        lines: list[bytes] = []
        self._arm(first_line_timeout)
        try:
            line = await self._line()
            while line in _BLANK:  # empty lines before a request line are skipped
                line = await self._line()
            if head_timeout != first_line_timeout:
                self._arm(head_timeout)
            lines.append(line)
            total = len(line)
            while line not in _BLANK:
                line = await self._line()
                lines.append(line)
                total += len(line)
                if total > HEAD_LIMIT:
                    raise asyncio.LimitOverrunError("request head too large", total)
        except asyncio.IncompleteReadError as exc:
            if self._expired:
                raise HeadTimeout from exc
            raise asyncio.IncompleteReadError(b"".join(lines) + exc.partial, None) from exc
        except ConnectionError as exc:
            if self._expired:
                raise HeadTimeout from exc
            raise
        finally:
            self._deadline = math.inf
        return b"".join(lines)
