"""`splice(..., upgrade_pause=)`: an upgrade's head reaches the client alone, its stream a
pause later (docker-py loses stream bytes read together with the head), while the
client's request body goes up at once (an exec start's engine waits for it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.api.http import splice

PAUSE = 0.3
REQUEST = b"POST /exec/x/start HTTP/1.1\r\nContent-Length: 7\r\n\r\npayload"


async def exchange(answer_head: bytes) -> tuple[bytes, bytes, float]:
    """A client through a splicing proxy to an engine that answers `answer_head + b"hello"`
    in one write once it has the request's body: (first read, the rest, seconds between)."""

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readexactly(7) == b"payload"
        writer.write(answer_head + b"hello")
        await writer.drain()
        writer.close()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        e_reader, e_writer = await asyncio.open_connection("127.0.0.1", engine_port)
        await splice(reader, writer, e_reader, e_writer, upgrade_pause=PAUSE)

    engine_server = await asyncio.start_server(engine, "127.0.0.1", 0)
    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    engine_port = engine_server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy_server.sockets[0].getsockname()[1]
        )
        writer.write(REQUEST)
        await writer.drain()
        first = await asyncio.wait_for(reader.read(65536), 5)
        at = time.monotonic()
        rest = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        return first, rest, time.monotonic() - at
    finally:
        for server in (proxy_server, engine_server):
            server.close()


async def test_an_upgrade_head_arrives_alone_and_its_stream_after_the_pause() -> None:
    head = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
    first, rest, between = await exchange(head)
    assert (first, rest) == (head, b"hello")
    assert between >= PAUSE * 0.8


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n\r\n"])
async def test_other_answers_are_not_held_back(head: bytes) -> None:
    first, rest, between = await exchange(head)
    assert first + rest == head + b"hello"
    assert between < PAUSE


async def test_only_a_one_shot_attach_is_paused() -> None:
    from shoal.api.http import make_request
    from shoal.api.primary.proxy import one_shot_attach

    assert one_shot_attach(make_request("POST", "/v1.41/containers/x/attach?logs=1&stream=0"))
    assert one_shot_attach(make_request("POST", "/containers/x/attach?logs=1"))
    assert not one_shot_attach(make_request("POST", "/containers/x/attach?stream=1&stdin=1"))
    assert not one_shot_attach(make_request("POST", "/exec/abc/start"))
