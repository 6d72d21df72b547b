"""The HTTP/1.1 server end to end: real listeners, real clients (aiohttp and raw sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import uvloop

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import (
    Hijack,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    error_response,
    json_response,
    make_request,
    splice,
)
from shoal.api.router import Router
from shoal.api.server import (
    APIServer,
    Listener,
    make_client_ssl_context,
    make_server_ssl_context,
    parse_host,
)
from tests.certs import CertPaths, make_ca_and_certs

TIMEOUT = 10.0

UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


@dataclass
class State:
    """What the test handlers share with the tests."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    echo_port: int = 0
    bodies: list[bytes] = field(default_factory=list)


def build_router(state: State) -> Router:
    router = Router()

    async def ping(request: Request, params: dict[str, str]) -> Response:
        return Response(200, b"OK", [("Api-Version", "1.40")], "text/plain; charset=utf-8")

    async def echo(request: Request, params: dict[str, str]) -> Response:
        cn = None
        if request.peer_cert:
            cn = dict(x[0] for x in request.peer_cert["subject"]).get("commonName")
        return json_response(
            {
                "method": request.method,
                "path": request.path,
                "target": request.target,
                "api_version": request.api_version,
                "query": request.query,
                "params": params,
                "all": request.flag("all"),
                "peer_cn": cn,
            }
        )

    async def body(request: Request, params: dict[str, str]) -> Response:
        limit = int(request.arg("limit") or 2**20)
        data = await request.body(limit)
        state.bodies.append(data)
        return json_response({"len": len(data)})

    async def stream_body(request: Request, params: dict[str, str]) -> Response:
        pieces = [piece async for piece in request.stream()]
        data = b"".join(pieces)
        state.bodies.append(data)
        return json_response({"len": len(data)})

    async def echo_json(request: Request, params: dict[str, str]) -> Response:
        return json_response({"got": await request.json()})

    async def boom(request: Request, params: dict[str, str]) -> Response:
        raise RuntimeError("kaboom")

    async def teapot(request: Request, params: dict[str, str]) -> Response:
        raise HTTPError(418, "short and stout")

    async def gated(request: Request, params: dict[str, str]) -> StreamResponse:
        async def gen() -> AsyncIterator[bytes]:
            await state.release.wait()
            yield b'{"StatusCode":0}\n'

        return StreamResponse(200, gen(), [("Api-Version", "1.40")])

    async def forever(request: Request, params: dict[str, str]) -> StreamResponse:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                while True:
                    await asyncio.sleep(3600)
                    yield b""
            finally:
                state.stream_closed.set()

        return StreamResponse(200, gen(), [])

    async def hijack(request: Request, params: dict[str, str]) -> Hijack:
        async def run(
            req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(UPGRADED)
            await writer.drain()
            e_reader, e_writer = await asyncio.open_connection("127.0.0.1", state.echo_port)
            await splice(reader, writer, e_reader, e_writer)

        return Hijack(run)

    router.add("GET", "/_ping", ping)
    router.add("GET", "/echo/{rest:.*}", echo)
    router.add("POST", "/body", body)
    router.add("POST", "/stream-body", stream_body)
    router.add("POST", "/json", echo_json)
    router.add("GET", "/boom", boom)
    router.add("GET", "/teapot", teapot)
    router.add("GET", "/gated", gated)
    router.add("GET", "/forever", forever)
    router.add("POST", "/hijack", hijack)
    return router


class EchoServer:
    """Echoes until EOF, then half-closes, like a container's stdin/stdout; owns its tasks."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._echo(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@dataclass
class Env:
    state: State
    server: APIServer
    port: int
    unix_path: str
    dispatcher: Dispatcher

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest_asyncio.fixture(loop_scope="function")
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    state = State()
    echo = EchoServer()
    state.echo_port = await echo.start()
    dispatcher = Dispatcher(build_router(state))
    unix_path = str(tmp_path / "shoal.sock")
    server = APIServer(dispatcher, ["tcp://127.0.0.1:0", f"unix://{unix_path}"], None)
    await server.start()
    port = int(server.addresses[0].rsplit(":", 1)[1])
    try:
        yield Env(state, server, port, unix_path, dispatcher)
    finally:
        await server.close()
        await echo.close()


# --- a tiny raw HTTP client -------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status), reason, headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)).strip(), 16)
    data = await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
    return data[:-2]


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> RawResponse:
    status, reason, headers = await read_head(reader)
    body = b""
    if head_only:
        pass
    elif "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT)
    elif headers.get("transfer-encoding") == "chunked":
        while chunk := await read_chunk(reader):
            body += chunk
    return RawResponse(status, reason, headers, body)


@contextlib.asynccontextmanager
async def raw(env: Env) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


# --- tests ------------------------------------------------------------------------------


async def test_keep_alive_several_requests_on_one_connection(env: Env) -> None:
    async with raw(env) as (reader, writer):
        for i in range(5):
            writer.write(get(f"/echo/n{i}"))
            response = await read_response(reader)
            assert response.status == 200
            assert response.json()["params"] == {"rest": f"n{i}"}
            assert "connection" not in response.headers
        # Pipelined requests are answered in order too.
        writer.write(get("/_ping") + get("/echo/last"))
        assert (await read_response(reader)).body == b"OK"
        assert (await read_response(reader)).json()["path"] == "/echo/last"


async def test_aiohttp_client_keep_alive(env: Env) -> None:
    created: list[object] = []

    async def on_create(*args: object) -> None:
        created.append(args)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
        for _ in range(4):
            async with session.get(f"{env.url}/_ping") as resp:
                assert resp.status == 200
                assert await resp.text() == "OK"
                assert resp.headers["Api-Version"] == "1.40"
                assert resp.headers["Server"] == "shoal"
                assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert len(created) == 1


async def test_version_prefix_query_and_percent_decoding(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{env.url}/v1.41/_ping") as resp:
            assert resp.status == 200
        async with session.get(f"{env.url}/v1.41/echo/node-0/c1?all=1&filters=&x=a&x=b") as resp:
            got = await resp.json()
        assert got["path"] == "/echo/node-0/c1"
        assert got["api_version"] == "1.41"
        assert got["target"] == "/v1.41/echo/node-0/c1?all=1&filters=&x=a&x=b"
        assert got["params"] == {"rest": "node-0/c1"}
        assert got["query"] == {"all": ["1"], "filters": [""], "x": ["a", "b"]}
        assert got["all"] is True
        async with session.get(f"{env.url}/echo/x?all=false") as resp:
            got = await resp.json()
        assert got["api_version"] is None
        assert got["all"] is False
    async with raw(env) as (reader, writer):
        writer.write(get("/v1.24/echo/a%2Fb%20c"))
        got = (await read_response(reader)).json()
        assert got["path"] == "/echo/a/b c"
        assert got["params"] == {"rest": "a/b c"}


async def test_head_gets_headers_without_body(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await read_response(reader, head_only=True)
        assert response.status == 200
        assert response.headers["content-length"] == "2"
        # The next response starts right away: no body bytes were sent for HEAD.
        writer.write(get("/_ping"))
        response = await read_response(reader)
        assert (response.status, response.body) == (200, b"OK")


async def test_chunked_request_body(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(
            b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
        )
        assert (await read_response(reader)).json() == {"len": 11}
        writer.write(
            b"POST /stream-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        assert (await read_response(reader)).json() == {"len": 3}
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
    assert env.state.bodies == [b"hello world", b"abc"]


async def test_invalid_chunked_body_is_400(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(
            b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
        )
        response = await read_response(reader)
        assert response.status == 400
        assert response.json() == {"message": "invalid chunked encoding"}


async def test_content_length_body_and_json(env: Env) -> None:
    payload = os.urandom(300_000)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{env.url}/body", data=payload) as resp:
            assert await resp.json() == {"len": len(payload)}
        async with session.post(f"{env.url}/stream-body", data=payload) as resp:
            assert await resp.json() == {"len": len(payload)}
        async with session.post(f"{env.url}/json", json={"Image": "busybox", "n": [1]}) as resp:
            assert await resp.json() == {"got": {"Image": "busybox", "n": [1]}}
        async with session.post(f"{env.url}/json") as resp:
            assert await resp.json() == {"got": None}
    assert env.state.bodies == [payload, payload]


async def test_expect_100_continue(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(
            b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _, _ = await read_head(reader)
        assert status == 100
        writer.write(b"data")
        assert (await read_response(reader)).json() == {"len": 4}


async def test_head_of_streamed_response_has_no_body(env: Env) -> None:
    env.state.release.set()
    async with raw(env) as (reader, writer):
        writer.write(b"HEAD /gated HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, headers = await read_head(reader)
        assert status == 200
        assert "transfer-encoding" not in headers
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"


async def test_body_over_limit_is_413_and_connection_survives(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"POST /body?limit=10 HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
        writer.write(b"x" * 20)
        response = await read_response(reader)
        assert response.status == 413
        assert response.json() == {"message": "request body too large"}
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
        writer.write(
            b"POST /body?limit=4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
        )
        assert (await read_response(reader)).status == 413
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"


async def test_unread_body_is_skipped_for_the_next_request(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"POST /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert (await read_response(reader)).status == 405
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"


async def test_malformed_json_is_400_json(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{env.url}/json", data=b"{not json") as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            message = (await resp.json())["message"]
    assert message.startswith("invalid JSON: ")


async def test_unknown_route_404_and_wrong_method_405(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{env.url}/v1.41/nope") as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "page not found"}
        async with session.delete(f"{env.url}/_ping") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET"
            assert await resp.json() == {"message": "method not allowed"}


async def test_handler_exception_is_500_and_server_keeps_serving(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw(env) as (reader, writer):
        writer.write(get("/boom"))
        response = await read_response(reader)
        assert response.status == 500
        assert response.json() == {"message": "kaboom"}
        writer.write(get("/teapot"))
        response = await read_response(reader)
        assert response.status == 418
        assert response.json() == {"message": "short and stout"}
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
    assert any("kaboom" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


async def test_bad_head_is_400_and_close(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nBad header line\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 400
        assert response.headers["connection"] == "close"
        assert "message" in response.json()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_oversized_head_is_431(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"GET /_ping HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 431
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_http10_closes_and_connection_close_honoured(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(b"GET /_ping HTTP/1.0\r\n\r\n")
        response = await read_response(reader)
        assert (response.status, response.headers["connection"]) == (200, "close")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    async with raw(env) as (reader, writer):
        writer.write(get("/_ping", "Connection: close\r\n"))
        assert (await read_response(reader)).headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_client_disconnect_mid_body_logs_no_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with raw(env) as (reader, writer):
        writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
    async with raw(env) as (reader, writer):
        writer.write(b"GET /_pi")
        await writer.drain()
    # The server is still fine, and nothing was logged as an error.
    async with raw(env) as (reader, writer):
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
    await asyncio.sleep(0.1)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_stream_headers_arrive_before_first_chunk(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(get("/gated"))
        status, _, headers = await read_head(reader)
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert headers["api-version"] == "1.40"
        assert not env.state.release.is_set()
        env.state.release.set()
        assert await read_chunk(reader) == b'{"StatusCode":0}\n'
        assert await read_chunk(reader) == b""
        # Keep-alive after a streamed response.
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"


async def test_request_sent_during_a_stream_is_answered_after_it(env: Env) -> None:
    """A client may send its next request the moment a stream's last chunk arrives, or even
    before the stream ends: the disconnect watcher must not eat its first bytes."""
    async with raw(env) as (reader, writer):
        writer.write(get("/gated"))
        await read_head(reader)
        writer.write(get("/echo/next"))
        await asyncio.sleep(0.05)  # the watcher has now taken the first byte of it
        env.state.release.set()
        assert await read_chunk(reader) == b'{"StatusCode":0}\n'
        assert await read_chunk(reader) == b""
        response = await read_response(reader)
        assert response.status == 200
        assert response.json()["path"] == "/echo/next"


async def test_stream_closed_when_client_disconnects(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(get("/forever"))
        await read_head(reader)
        assert await read_chunk(reader) == b"first\n"
    await asyncio.wait_for(env.state.stream_closed.wait(), TIMEOUT)


async def test_aiohttp_reads_stream(env: Env) -> None:
    env.state.release.set()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{env.url}/gated") as resp:
            assert await resp.json() == {"StatusCode": 0}


async def test_hijack_upgrade_echo_and_half_close(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(
            b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
            b'{"Tty":false}'
        )
        status, reason, headers = await read_head(reader)
        assert (status, reason) == (101, "UPGRADED")
        assert headers["upgrade"] == "tcp"
        # The request body was left in the reader and reached the far side first.
        assert await asyncio.wait_for(reader.readexactly(13), TIMEOUT) == b'{"Tty":false}'
        writer.write(b"more bytes")
        assert await asyncio.wait_for(reader.readexactly(10), TIMEOUT) == b"more bytes"
        writer.write(b"last")
        writer.write_eof()
        # After our half-close the echo side still answers, then ends its side.
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"last"


async def test_request_is_upgrade_property() -> None:
    request = make_request(
        "POST", "/x", [("Connection", "keep-alive, Upgrade"), ("Upgrade", "tcp")]
    )
    assert request.is_upgrade
    assert not make_request("POST", "/x", [("Connection", "Upgrade")]).is_upgrade
    assert not make_request("POST", "/x", [("Upgrade", "tcp")]).is_upgrade


async def test_make_request_and_query_helpers() -> None:
    request = make_request("POST", "/v1.40/containers/create?name=web&force=0&v=yes", body=b"{}")
    assert (request.path, request.api_version) == ("/containers/create", "1.40")
    assert request.arg("name") == "web"
    assert request.arg("missing", "dflt") == "dflt"
    assert request.flag("v") is True
    assert request.flag("force") is False
    assert request.flag("absent") is False
    for false_value in ("", "0", "no", "FALSE", "None"):
        assert make_request("GET", f"/x?f={false_value}").flag("f") is False
    assert await request.json() == {}
    assert await request.body() == b"{}"  # cached: a second read returns the same bytes


async def test_unix_socket_listener(env: Env) -> None:
    mode = os.stat(env.unix_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    connector = aiohttp.UnixConnector(path=env.unix_path)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(2):
            async with session.get("http://shoal/v1.41/echo/u") as resp:
                assert (await resp.json())["path"] == "/echo/u"
    assert f"unix://{env.unix_path}" in env.server.addresses
    await env.server.close()
    assert not await asyncio.to_thread(os.path.exists, env.unix_path)


async def test_close_ends_idle_and_busy_connections(env: Env) -> None:
    async with raw(env) as (reader, writer):
        writer.write(get("/_ping"))
        await read_response(reader)
        async with raw(env) as (reader2, writer2):
            writer2.write(get("/forever"))
            await read_head(reader2)
            await asyncio.wait_for(env.server.close(), TIMEOUT)
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
            await asyncio.wait_for(env.state.stream_closed.wait(), TIMEOUT)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", env.port)


async def test_dispatcher_swap_and_no_handler(env: Env) -> None:
    gate = asyncio.Event()

    async def old(request: Request) -> Response:
        await gate.wait()
        return json_response({"handler": "old"})

    async def new(request: Request) -> Response:
        return json_response({"handler": "new"})

    env.dispatcher.set_handler(None)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{env.url}/_ping") as resp:
            assert resp.status == 500
            assert await resp.json() == {"message": "No dispatcher defined"}
        env.dispatcher.set_handler(old)
        in_flight = asyncio.ensure_future(session.get(f"{env.url}/x"))
        await asyncio.sleep(0.05)
        env.dispatcher.set_handler(new)
        async with session.get(f"{env.url}/x") as resp:
            assert await resp.json() == {"handler": "new"}
        gate.set()
        resp = await asyncio.wait_for(in_flight, TIMEOUT)
        assert await resp.json() == {"handler": "old"}
        resp.release()


async def test_dispatcher_cors() -> None:
    async def handler(request: Request) -> Response:
        return error_response(404, "page not found")

    dispatcher = Dispatcher(handler, cors=True)
    response = await dispatcher(make_request("GET", "/x"))
    assert isinstance(response, Response)
    assert ("Access-Control-Allow-Origin", "*") in response.headers
    assert (
        "Access-Control-Allow-Methods",
        "GET, POST, DELETE, PUT, OPTIONS, HEAD",
    ) in response.headers
    options = await dispatcher(make_request("OPTIONS", "/containers/json"))
    assert isinstance(options, Response)
    assert (options.status, options.body) == (200, b"")
    plain = await Dispatcher(handler)(make_request("GET", "/x"))
    assert isinstance(plain, Response)
    assert plain.headers == []


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(tmp_path_factory.mktemp("certs"))


async def test_tls_requires_client_certificate(certs: CertPaths, tmp_path: Path) -> None:
    state = State()
    unix_path = str(tmp_path / "tls.sock")
    server_ctx = make_server_ssl_context(certs.cert, certs.key, certs.ca, verify=True)
    server = APIServer(build_router(state), ["127.0.0.1:0", f"unix://{unix_path}"], server_ctx)
    await server.start()
    try:
        port = int(server.addresses[0].rsplit(":", 1)[1])
        good = make_client_ssl_context(certs.client_cert, certs.client_key, certs.ca, verify=True)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/echo/t", ssl=good) as resp:
                got = await resp.json()
            assert got["peer_cn"] == "client"
            async with session.get(f"https://localhost:{port}/_ping", ssl=good) as resp:
                assert await resp.text() == "OK"

        # The manager's own pair works as a client cert too (Swarm uses one pair for all).
        same = make_client_ssl_context(certs.cert, certs.key, certs.ca, verify=True)
        reader, writer = await asyncio.open_unix_connection(
            unix_path, ssl=same, server_hostname="localhost"
        )
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
        writer.close()

        no_cert = ssl.create_default_context(cafile=certs.ca)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=no_cert, server_hostname="localhost"
            )
            writer.write(get("/_ping"))
            await writer.drain()
            await read_response(reader)
    finally:
        await server.close()


async def test_tls_without_verify_accepts_any_client(certs: CertPaths) -> None:
    server_ctx = make_server_ssl_context(certs.cert, certs.key, None, verify=False)
    server = APIServer(build_router(State()), ["127.0.0.1:0"], server_ctx)
    await server.start()
    try:
        port = int(server.addresses[0].rsplit(":", 1)[1])
        insecure = make_client_ssl_context(certs.client_cert, certs.client_key, None, verify=False)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/_ping", ssl=insecure) as resp:
                assert await resp.text() == "OK"
    finally:
        await server.close()


def test_tls_load_errors(certs: CertPaths, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(
        ValueError, match=r"^Couldn't load X509 key pair \(.*\): .*Key encrypted\?$"
    ):
        make_server_ssl_context(certs.cert, missing, None, verify=False)
    with pytest.raises(ValueError, match=r"^Couldn't read CA certificate: "):
        make_server_ssl_context(certs.cert, certs.key, missing, verify=True)
    ctx = make_server_ssl_context(certs.cert, certs.key, certs.ca, verify=True)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    client = make_client_ssl_context(certs.cert, certs.key, None, verify=False)
    assert (client.verify_mode, client.check_hostname) == (ssl.CERT_NONE, False)


# --- listeners --------------------------------------------------------------------------


def test_parse_host() -> None:
    assert parse_host("tcp://127.0.0.1:2375") == Listener("tcp", "127.0.0.1", 2375)
    assert parse_host("0.0.0.0:3376") == Listener("tcp", "0.0.0.0", 3376)
    assert parse_host(":2375") == Listener("tcp", "0.0.0.0", 2375)
    assert parse_host("tcp://:2375") == Listener("tcp", "0.0.0.0", 2375)
    assert parse_host("localhost:1") == Listener("tcp", "localhost", 1)
    assert parse_host("[::1]:2375") == Listener("tcp", "::1", 2375)
    assert parse_host("unix:///var/run/shoal.sock") == Listener("unix", path="/var/run/shoal.sock")
    with pytest.raises(ValueError, match=r'^unsupported protocol: "fd"$'):
        parse_host("fd://3")
    with pytest.raises(ValueError, match="missing port"):
        parse_host("tcp://127.0.0.1")
    with pytest.raises(ValueError, match='invalid port "abc"'):
        parse_host("127.0.0.1:abc")
    with pytest.raises(ValueError, match="invalid port"):
        parse_host("127.0.0.1:70000")
    with pytest.raises(ValueError, match="missing socket path"):
        parse_host("unix://")


async def test_bind_error_messages() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = APIServer(Dispatcher(), [f"127.0.0.1:{port}"])
        with pytest.raises(OSError) as info:
            await server.start()
        assert info.value.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(info.value)
        assert "Docker already running" not in str(info.value)
    finally:
        taken.close()
    blocker = socket.socket()
    with contextlib.suppress(OSError):  # if something already holds 2375, it stays busy anyway
        blocker.bind(("127.0.0.1", 2375))
        blocker.listen()
    try:
        server = APIServer(Dispatcher(), ["tcp://127.0.0.1:2375"])
        with pytest.raises(OSError, match="is Docker already running on this machine"):
            await server.start()
    finally:
        blocker.close()


async def test_start_failure_closes_earlier_listeners(tmp_path: Path) -> None:
    unix_path = str(tmp_path / "first.sock")
    server = APIServer(Dispatcher(), [f"unix://{unix_path}", "tcp://256.0.0.1:1"])
    with pytest.raises(OSError):
        await server.start()
    assert server.addresses == []
    assert not await asyncio.to_thread(os.path.exists, unix_path)


# --- uvloop -----------------------------------------------------------------------------


def test_on_uvloop(tmp_path: Path) -> None:
    """The production loop: keep-alive, a streamed response and a hijack with half-close."""

    async def scenario() -> None:
        state = State()
        echo = EchoServer()
        state.echo_port = await echo.start()
        server = APIServer(Dispatcher(build_router(state)), ["127.0.0.1:0"])
        await server.start()
        try:
            port = int(server.addresses[0].rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):
                writer.write(get("/v1.41/_ping"))
                assert (await read_response(reader)).body == b"OK"
            writer.write(get("/gated"))
            await read_head(reader)
            state.release.set()
            assert await read_chunk(reader) == b'{"StatusCode":0}\n'
            assert await read_chunk(reader) == b""
            writer.write(
                b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                b"Content-Length: 2\r\n\r\nhi"
            )
            assert (await read_head(reader))[0] == 101
            assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"hi"
            writer.write(b"bye")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"bye"
            writer.close()
        finally:
            await server.close()
            await echo.close()

    uvloop.run(scenario())
