"""Relaying a client's request to an engine over pooled raw connections.

The proxied path is shoal's hot path (every `logs`, `top`, `stop`, image inspect...), and
a general HTTP client costs more per request than the engine takes to answer. Here the
client's request head is written to the engine unchanged except for its target, and only
the engine's response head is parsed (with httptools), to learn the framing; bodies pass
through as bytes. A connection goes back to the pool once its response has been read to
the end and the engine did not ask to close it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httptools

from shoal.cluster.errors import EngineConnectionError

if TYPE_CHECKING:
    from shoal.cluster.client import EngineClient

POOL_SIZE = 16
PIECE = 256 * 1024


@dataclass(slots=True)
class RawConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass(slots=True)
class RawResponse:
    """An engine's answer: its head parsed, its body still to be read through `body()`."""

    status: int
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    conn: RawConnection
    pool: RawPool
    _done: bool = field(default=False)

    async def read(self) -> bytes:
        """The whole body (for answers with a length: one read, no per-piece iteration)."""
        if self.content_length is None or self.chunked:
            return b"".join([chunk async for chunk in self.body()])
        self._done = True
        try:
            data = await self.conn.reader.readexactly(self.content_length)
        except BaseException:
            self.conn.writer.close()
            raise
        if self.keep_alive:
            self.pool.release(self.conn)
        else:
            self.conn.writer.close()
        return data

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection is pooled or closed at the end."""
        reader = self.conn.reader
        ok = False
        try:
            if self.chunked:
                while True:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers
                        break
                    async for data in _exactly(reader, size):
                        yield data
                    await reader.readexactly(2)
            elif self.content_length is not None:
                async for data in _exactly(reader, self.content_length):
                    yield data
            else:
                while data := await reader.read(PIECE):
                    yield data
                self.keep_alive = False
            ok = True
        finally:
            self._done = True
            if ok and self.keep_alive:
                self.pool.release(self.conn)
            else:
                self.conn.writer.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self.conn.writer.close()


async def _exactly(reader: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    """`size` bytes, passed on in the pieces they arrive in."""
    remaining = size
    while remaining:
        data = await reader.read(min(remaining, PIECE))
        if not data:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(data)
        yield data


class _HeadParser:
    """httptools callbacks for one response head."""

    __slots__ = ("headers",)

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))


class RawPool:
    """Idle keep-alive connections to one engine."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.idle: list[RawConnection] = []

    def release(self, conn: RawConnection) -> None:
        if len(self.idle) < POOL_SIZE and not conn.writer.is_closing():
            self.idle.append(conn)
        else:
            conn.writer.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()

    async def _connection(self) -> tuple[RawConnection, bool]:
        while self.idle:
            conn = self.idle.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn, True
            conn.writer.close()
        reader, writer = await self.client.open_raw()
        return RawConnection(reader, writer), False

    async def send(self, head: bytes, body: bytes = b"", *, head_only: bool = False) -> RawResponse:
        """Write one request, read its response head; a stale pooled connection is retried.

        `head_only` is for HEAD requests, whose answers carry a length but no body.
        """
        for _ in range(2):
            conn, reused = await self._connection()
            try:
                conn.writer.write(head + body if body else head)
                await conn.writer.drain()
                raw_head = await conn.reader.readuntil(b"\r\n\r\n")
                while raw_head.startswith((b"HTTP/1.1 100", b"HTTP/1.0 100")):
                    raw_head = await conn.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                conn.writer.close()
                if reused:
                    continue  # the engine closed an idle connection: try a fresh one
                raise EngineConnectionError(
                    f"Cannot connect to the Docker daemon at {self.client.address.entry}: {exc}"
                ) from exc
            except BaseException:
                conn.writer.close()  # cancelled or timed out mid-exchange: never pooled
                raise
            response = self._parse(raw_head, conn)
            if head_only:
                response.content_length = 0
                response.chunked = False
            return response
        raise EngineConnectionError(
            f"Cannot connect to the Docker daemon at {self.client.address.entry}"
        )

    async def fetch(self, method: str, target: str, host: str) -> tuple[int, bytes]:
        """A bodiless request answered in full: the engine's status and body.

        Background reads (lists, inspects, probes) go this way: the request is a few
        bytes written to a kept-alive connection, far cheaper than a general client.
        """
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1")
        resp = await self.send(head, head_only=method == "HEAD")
        try:
            return resp.status, await resp.read()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            raise EngineConnectionError(
                f"Cannot connect to the Docker daemon at {self.client.address.entry}: {exc}"
            ) from exc
        finally:
            resp.close()

    def _parse(self, raw_head: bytes, conn: RawConnection) -> RawResponse:
        collector = _HeadParser()
        parser = httptools.HttpResponseParser(collector)
        with contextlib.suppress(httptools.HttpParserUpgrade):
            parser.feed_data(raw_head)
        status = parser.get_status_code()
        length: int | None = None
        chunked = False
        keep_alive = parser.should_keep_alive()
        for name, value in collector.headers:
            lower = name.lower()
            if lower == "content-length":
                length = int(value)
            elif lower == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        return RawResponse(status, collector.headers, length, chunked, keep_alive, conn, self)
