"""Responses written onto a connection, apart from the request loop that decides them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Final

from shoal.api.heads import HeadReader
from shoal.api.http import REASONS, Request, Response, StreamResponse

logger = logging.getLogger(__name__)

_INLINE_BODY: Final = 16 * 1024
_NO_BODY_STATUS: Final = frozenset((204, 304))
_FRAMING_HEADERS: Final = frozenset(("content-length", "transfer-encoding", "connection"))
_LINGER: Final = 2.0
"""After an error answered before the body was read, how long its rest is drained so the
client (still sending) reads the answer instead of a connection reset."""
_LINGER_BYTES: Final = 64 * 2**20


class DateClock:
    """The `Date` header value, formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True)
        return self._value


def _encode_head(
    status: int,
    content_type: str | None,
    length: int | None,
    chunked: bool,
    headers: list[tuple[str, str]],
    keep_alive: bool,
    date: str,
) -> bytes:
    reason = REASONS.get(status, "Unknown")
    parts = [f"HTTP/1.1 {status} {reason}\r\nServer: shoal\r\nDate: {date}\r\n"]
    if content_type is not None:
        parts.append(f"Content-Type: {content_type}\r\n")
    if length is not None:
        parts.append(f"Content-Length: {length}\r\n")
    elif chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    for name, value in headers:
        if name.lower() not in _FRAMING_HEADERS:
            parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n" if keep_alive else "Connection: close\r\n\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


async def write_response(
    writer: asyncio.StreamWriter,
    request: Request | None,
    response: Response,
    keep_alive: bool,
    date: str,
) -> None:
    status = response.status
    body = response.body
    no_body = status < 200 or status in _NO_BODY_STATUS
    head = _encode_head(
        status,
        None if no_body else response.content_type,
        None if no_body else len(body),
        False,
        response.headers,
        keep_alive,
        date,
    )
    if no_body or not body or (request is not None and request.method == "HEAD"):
        writer.write(head)
    elif len(body) <= _INLINE_BODY:
        writer.write(head + body)
    else:
        writer.write(head)
        writer.write(body)
    if writer.transport.get_write_buffer_size():
        await writer.drain()


async def _pump(body: AsyncIterator[bytes], writer: asyncio.StreamWriter, chunked: bool) -> None:
    transport = writer.transport
    async for chunk in body:
        if chunk:
            if transport.is_closing():
                raise ConnectionResetError("client connection closed")
            if not chunked:
                writer.write(chunk)
            elif len(chunk) <= _INLINE_BODY:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:  # no copy of a big chunk (a long container list comes in 1 MB ones)
                writer.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _await_cancelled(task: asyncio.Task[None] | asyncio.Task[bytes]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client still sends for a moment (as Go's server does),
    so a client busy sending a refused body reads the answer rather than a reset."""
    if writer.transport.is_closing() or not writer.can_write_eof():
        return
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, TimeoutError):
        writer.write_eof()
        async with asyncio.timeout(_LINGER):
            total = 0
            while total < _LINGER_BYTES and (data := await reader.read(256 * 1024)):
                total += len(data)


async def write_stream(
    heads: HeadReader,
    writer: asyncio.StreamWriter,
    request: Request,
    response: StreamResponse,
    keep_alive: bool,
    date: str,
) -> bool:
    """Send a streamed response; True when the connection can serve another request."""
    body = response.body
    pump: asyncio.Task[None] | None = None
    try:
        chunked = request.http_version == "1.1"
        keep_alive = keep_alive and chunked
        head_only = request.method == "HEAD" or response.status in _NO_BODY_STATUS
        writer.write(
            _encode_head(
                response.status,
                response.content_type,
                None,
                chunked and not head_only,
                response.headers,
                keep_alive,
                date,
            )
        )
        await writer.drain()
        if head_only:
            return keep_alive
        pump = asyncio.ensure_future(_pump(body, writer, chunked))
        if not request.body_complete:
            # The handler may still be reading the body: no disconnect watch on the reader.
            await pump
            return keep_alive
        return await _pump_watching(heads, pump) and keep_alive
    except (ConnectionError, ssl.SSLError) as exc:
        logger.debug("client connection lost during a streamed response: %s", exc)
        return False
    except Exception as exc:
        logger.error("HTTP error: streamed response failed: %s", exc, exc_info=True)
        return False
    finally:
        if pump is not None:
            await _await_cancelled(pump)
        await _close_stream(body)


async def _pump_watching(heads: HeadReader, pump: asyncio.Task[None]) -> bool:
    """Await `pump` while watching the client; False when the client left first.

    A client that leaves sends EOF; watching for it cancels e.g. an idle /events stream.
    """
    watcher = asyncio.ensure_future(heads.reader.read(1))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
        if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
            taken = watcher.result()
            if not taken:
                if not pump.done():
                    logger.debug("client went away during a streamed response")
                return False
            # The start of the client's next request (it may send it as soon as the last
            # chunk arrives): give it back for the next head read.
            heads.unread(taken)
        elif watcher.done():
            return False
        await pump
        pump.result()
        return True
    finally:
        await _await_cancelled(watcher)


async def _close_stream(body: AsyncIterator[bytes]) -> None:
    """Close the response's iterator, which cancels the upstream work feeding it."""
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as exc:
            logger.debug("closing a response stream failed: %s", exc)
