"""The raw passthrough pool against a small local HTTP server: framing and connection reuse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.cluster.client import EngineAddress, EngineClient
from shoal.cluster.passthrough import RawPool


class Upstream:
    """Answers by path; counts connections; can drop idle ones like an engine restarting."""

    def __init__(self) -> None:
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                method = head.split(b" ", 1)[0]
                if path == b"/fixed":
                    body = b'{"ok":true}'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body))
                    if method != b"HEAD":
                        writer.write(body)
                elif path == b"/chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                elif path == b"/empty":
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                elif path == b"/close":
                    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye")
                    await writer.drain()
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def drop_all(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def close(self) -> None:
        self.drop_all()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest_asyncio.fixture(loop_scope="function")
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="function")
async def pool(upstream: Upstream) -> AsyncIterator[RawPool]:
    client = EngineClient(EngineAddress.parse(f"127.0.0.1:{upstream.port}"), None)
    raw = RawPool(client)
    try:
        yield raw
    finally:
        raw.close()
        await client.close()


def head(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_lengths_chunks_and_reuse(upstream: Upstream, pool: RawPool) -> None:
    for _ in range(3):
        resp = await pool.send(head("/fixed"))
        assert resp.status == 200
        assert ("Content-Type", "application/json") in resp.headers
        assert await resp.read() == b'{"ok":true}'
        chunked = await pool.send(head("/chunked"))
        assert chunked.chunked
        assert b"".join([c async for c in chunked.body()]) == b"hello world"
        empty = await pool.send(head("/empty"))
        assert empty.status == 204 and await empty.read() == b""
    assert upstream.connections == 1  # every answer read to its end: one connection reused


async def test_head_answer_has_no_body(upstream: Upstream, pool: RawPool) -> None:
    resp = await pool.send(head("/fixed", "HEAD"), head_only=True)
    assert await resp.read() == b""
    # The connection is still in step: the next answer parses.
    assert await (await pool.send(head("/fixed"))).read() == b'{"ok":true}'
    assert upstream.connections == 1


async def test_engine_closing_idle_connections_is_retried(upstream: Upstream, pool: RawPool
                                                          ) -> None:
    assert await (await pool.send(head("/fixed"))).read() == b'{"ok":true}'
    upstream.drop_all()
    await asyncio.sleep(0.05)
    assert await (await pool.send(head("/fixed"))).read() == b'{"ok":true}'
    assert upstream.connections == 2


async def test_connection_close_is_not_pooled(upstream: Upstream, pool: RawPool) -> None:
    resp = await pool.send(head("/close"))
    assert b"".join([c async for c in resp.body()]) == b"bye"
    assert pool.idle == []


async def test_unread_stream_is_closed_not_pooled(upstream: Upstream, pool: RawPool) -> None:
    resp = await pool.send(head("/chunked"))
    resp.close()
    assert pool.idle == []
    assert await (await pool.send(head("/fixed"))).read() == b'{"ok":true}'
    assert upstream.connections == 2


@pytest.mark.parametrize("path", ["/fixed", "/chunked"])
async def test_unreachable_engine_is_a_connection_error(path: str) -> None:
    from shoal.cluster.errors import EngineConnectionError

    client = EngineClient(EngineAddress.parse("127.0.0.1:9"), None)
    try:
        with pytest.raises(EngineConnectionError):
            await RawPool(client).send(head(path))
    finally:
        await client.close()
