"""The server's limits and engine-like edge: timeouts, connection cap, versions, odd heads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import BodyPace, json_depth_exceeds
from shoal.api.server import APIServer, ServerLimits, make_server_ssl_context
from shoal.api.tls import PLAIN_HTTP_ANSWER
from shoal.api.versions import version_error
from shoal.options import OptionsError, RawManage, parse_manage
from tests.certs import CertPaths, make_ca_and_certs
from tests.unit.test_http_server import (
    TIMEOUT,
    UPGRADED,
    EchoServer,
    State,
    build_router,
    get,
    read_chunk,
    read_response,
)

SHORT = 0.3
"""The timeouts under test; the checks wait several times longer, never asserting speed."""

TOO_NEW = "client version 1.99 is too new. Maximum supported API version is 1.41"
TOO_OLD = (
    "client version 1.0 is too old. Minimum supported API version is 1.12, "
    "please upgrade your client to a newer version"
)


@dataclass
class Edge:
    state: State
    server: APIServer
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def edge(limits: ServerLimits, versions: bool = True) -> AsyncIterator[Edge]:
    state = State()
    echo = EchoServer()
    state.echo_port = await echo.start()
    server = APIServer(
        Dispatcher(build_router(state)),
        ["tcp://127.0.0.1:0"],
        None,
        limits,
        versions=(lambda: ("1.12", "1.41")) if versions else None,
    )
    await server.start()
    try:
        yield Edge(state, server, int(server.addresses[0].rsplit(":", 1)[1]))
    finally:
        await server.close()
        await echo.close()


@pytest_asyncio.fixture(loop_scope="function")
async def fast() -> AsyncIterator[Edge]:
    """Short head, idle and body limits."""
    limits = ServerLimits(
        head_timeout=SHORT, idle_timeout=SHORT, body=BodyPace(SHORT, 1e6), max_connections=0
    )
    async with edge(limits) as e:
        yield e


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes (EOF or reset) within TIMEOUT; False when it keeps it open."""
    try:
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def still_open(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when nothing (no EOF either) arrives for `seconds`."""
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    return False


# --- API version range --------------------------------------------------------------------


def test_version_error_texts_are_the_engines() -> None:
    assert version_error("1.99", "1.12", "1.41") == TOO_NEW
    assert version_error("1.0", "1.12", "1.41") == TOO_OLD
    assert version_error("1.41", "1.12", "1.41") is None
    assert version_error("1.12", "1.12", "1.41") is None
    assert version_error("1.9", "1.12", "1.41") is not None  # numeric, not textual, order


async def test_versions_outside_the_range_answer_400(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        for path, status in (
            ("/v1.41/_ping", 200),
            ("/v1.12/_ping", 200),
            ("/v1.41.0/_ping", 200),
            ("/_ping", 200),
            ("/v1.99/_ping", 400),
            ("/v1.0/echo/x", 400),
            ("/v2/_ping", 400),
        ):
            writer.write(get(path))
            response = await read_response(reader)
            assert response.status == status, path
            if status == 400:
                assert response.headers["api-version"] == "1.41"
        writer.write(get("/v1.99/_ping"))
        response = await read_response(reader)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"message": TOO_NEW}
        # Below 1.24 the engine sends errors as plain text.
        writer.write(get("/v1.0/containers/json"))
        response = await read_response(reader)
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.body == TOO_OLD.encode() + b"\n"
    finally:
        writer.close()


# --- odd heads ------------------------------------------------------------------------------


async def test_bare_lf_requests_are_answered(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(b"GET /v1.41/_ping HTTP/1.1\nHost: x\n\n")
        assert (await read_response(reader)).body == b"OK"
        # Mixed line ends, then a body with Content-Length: the body is intact.
        writer.write(b"POST /json HTTP/1.1\r\nHost: x\nContent-Length: 8\n\r\n[1,2,3]\n")
        assert (await read_response(reader)).json() == {"got": [1, 2, 3]}
        writer.write(b"GET /v1.99/_ping HTTP/1.1\nHost: x\n\n")
        assert (await read_response(reader)).json() == {"message": TOO_NEW}
    finally:
        writer.close()


async def test_bare_lf_garbage_answers_400(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(b"NOT HTTP AT ALL\n\n")
        response = await read_response(reader)
        assert response.status == 400
        assert response.headers.get("connection") == "close"
    finally:
        writer.close()


# --- slow and idle clients --------------------------------------------------------------------


async def test_half_a_head_is_closed_while_others_are_served(fast: Edge) -> None:
    slow_reader, slow_writer = await fast.connect()
    silent_reader, silent_writer = await fast.connect()
    try:
        slow_writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\nUser-Ag")
        # Keep-alive traffic on another connection is served throughout.
        reader, writer = await fast.connect()
        for _ in range(3):
            writer.write(get("/_ping"))
            assert (await read_response(reader)).body == b"OK"
            await asyncio.sleep(SHORT / 3)
        writer.close()
        assert await closed_by_server(slow_reader)
        assert await closed_by_server(silent_reader)  # connected, never sent a byte
    finally:
        slow_writer.close()
        silent_writer.close()


async def test_head_trickled_slower_than_the_limit_is_closed(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(b"GET /_ping HTTP/1.1\r\n")
        for _ in range(20):  # a header line every SHORT/3: each line in time, the head not
            await asyncio.sleep(SHORT / 3)
            if writer.is_closing() or reader.at_eof():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
        assert await closed_by_server(reader)
    finally:
        writer.close()


async def test_idle_keep_alive_is_closed(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(get("/_ping"))
        assert (await read_response(reader)).body == b"OK"
        assert await closed_by_server(reader)
    finally:
        writer.close()


async def test_no_limits_when_zero() -> None:
    limits = ServerLimits(
        head_timeout=0, idle_timeout=0, body=BodyPace(0, 1), max_connections=0
    )
    async with edge(limits) as e:
        reader, writer = await e.connect()
        try:
            writer.write(get("/_ping"))
            assert (await read_response(reader)).body == b"OK"
            assert await still_open(reader, 1.0)
            writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
            await asyncio.sleep(0.5)
            writer.write(b"56789")
            assert (await read_response(reader)).json() == {"len": 10}
        finally:
            writer.close()


async def test_streams_are_not_cut_by_the_idle_timeout(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(get("/forever"))
        response = await read_response(reader, head_only=True)
        assert response.status == 200
        assert await read_chunk(reader) == b"first\n"
        assert await still_open(reader, SHORT * 4)
        assert not fast.state.stream_closed.is_set()
    finally:
        writer.close()


async def test_hijacked_connections_are_not_cut(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(
            b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        assert await asyncio.wait_for(reader.readexactly(len(UPGRADED)), TIMEOUT) == UPGRADED
        for i in range(3):
            await asyncio.sleep(SHORT * 1.5)  # longer than every limit
            writer.write(b"ping %d\n" % i)
            line = await asyncio.wait_for(reader.readuntil(b"\n"), TIMEOUT)
            assert line == b"ping %d\n" % i
    finally:
        writer.close()


async def test_a_stalled_body_is_closed(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        assert await closed_by_server(reader)
    finally:
        writer.close()
    reader, writer = await fast.connect()
    try:
        writer.write(
            b"POST /stream-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        assert await closed_by_server(reader)
    finally:
        writer.close()
    assert fast.state.bodies == []


async def test_a_slow_but_steady_stream_body_is_kept(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        writer.write(
            b"POST /stream-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(6):  # in all longer than the pace's base, each piece within it
            writer.write(b"5\r\nhello\r\n")
            await asyncio.sleep(SHORT / 3)
        writer.write(b"0\r\n\r\n")
        assert (await read_response(reader)).json() == {"len": 30}
    finally:
        writer.close()


def test_body_budget_scales_with_size() -> None:
    pace = BodyPace(base=10, rate=1000)
    assert pace.budget(0) == 10
    assert pace.budget(5000) == 15


# --- connection cap ---------------------------------------------------------------------------


async def test_connection_cap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shoal.api.server")
    async with edge(ServerLimits(max_connections=2)) as e:
        held = [await e.connect() for _ in range(2)]
        try:
            for reader, writer in held:  # both accepted and served
                writer.write(get("/_ping"))
                assert (await read_response(reader)).body == b"OK"
            reader, writer = await e.connect()
            try:
                writer.write(get("/_ping"))
                assert await closed_by_server(reader)
            finally:
                writer.close()
            assert any("Connection limit reached" in r.getMessage() for r in caplog.records)
            for reader, writer in held:  # existing ones unharmed
                writer.write(get("/_ping"))
                assert (await read_response(reader)).body == b"OK"
            held[0][1].close()
            held.pop(0)
            for _ in range(50):  # the server notices the close
                await asyncio.sleep(0.05)
                reader, writer = await e.connect()
                writer.write(get("/_ping"))
                try:
                    answered = (await read_response(reader)).body == b"OK"
                except (ConnectionError, asyncio.IncompleteReadError):
                    answered = False
                writer.close()
                if answered:
                    break
            assert answered
        finally:
            for _, writer in held:
                writer.close()


# --- JSON bodies ------------------------------------------------------------------------------


async def test_json_too_large_is_refused_before_it_is_read(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        size = 20 * 2**20
        writer.write(
            f"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        writer.write(b"[" + b"0," * 1000)  # a start; the rest never comes
        response = await read_response(reader)
        assert response.status == 413
        assert response.headers.get("connection") == "close"
    finally:
        writer.close()


async def test_json_too_deep_or_invalid_answers_400(fast: Edge) -> None:
    reader, writer = await fast.connect()
    try:
        for body, text in (
            (b"[" * 100_000 + b"]" * 100_000, "exceeded max depth"),
            (b'{"a": [1, 2', "invalid JSON"),
            (b"\xff\xfe{}", "invalid JSON"),
        ):
            head = b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            writer.write(head + body)
            response = await read_response(reader)
            assert response.status == 400
            assert text in response.json()["message"]
        body = json.dumps({"Labels": {"a": "[[[[{{{{"}, "Cmd": [[[1]]]}).encode()
        writer.write(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        assert (await read_response(reader)).status == 200
    finally:
        writer.close()


def test_json_depth_scan() -> None:
    assert not json_depth_exceeds(b"[" * 10 + b"]" * 10, 10)
    assert json_depth_exceeds(b"[" * 11 + b"]" * 11, 10)
    assert not json_depth_exceeds(b'["' + b"[" * 50 + b'"]', 10)  # brackets in a string
    assert not json_depth_exceeds(b'["\\"' + b"{" * 50 + b'"]', 10)  # after an escaped quote
    assert json_depth_exceeds(b'{"a":' * 20 + b"1" + b"}" * 20, 10)


# --- plain HTTP on a TLS listener -------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(tmp_path_factory.mktemp("certs"))


async def test_plain_http_to_tls_gets_the_engines_hint(certs: CertPaths, tmp_path: Path) -> None:
    server_ctx = make_server_ssl_context(certs.cert, certs.key, certs.ca, verify=True)
    server = APIServer(build_router(State()), ["127.0.0.1:0"], server_ctx)
    await server.start()
    try:
        port = int(server.addresses[0].rsplit(":", 1)[1])
        for request in (get("/_ping"), b"POST /containers/create HTTP/1.1\r\n\r\n", b"HEAD / x"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request[:3])  # split first bytes: the check waits for five
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(request[3:])
                answer = await asyncio.wait_for(reader.read(), TIMEOUT)
                assert answer == PLAIN_HTTP_ANSWER
                assert answer.endswith(b"Client sent an HTTP request to an HTTPS server.\n")
            finally:
                writer.close()
    finally:
        await server.close()


# --- flags ------------------------------------------------------------------------------------


def test_limit_flags_defaults_and_errors() -> None:
    options = parse_manage(RawManage(args=("nodes://127.0.0.1:2375",)), {})
    assert (options.api_head_timeout, options.api_idle_timeout) == (30.0, 120.0)
    assert (options.api_body_timeout, options.api_body_min_rate) == (60.0, 65536)
    assert options.api_max_connections == 2048
    options = parse_manage(
        RawManage(
            args=("nodes://127.0.0.1:2375",),
            api_head_timeout="500ms",
            api_idle_timeout="0",
            api_max_connections="0",
        ),
        {},
    )
    assert (options.api_head_timeout, options.api_idle_timeout) == (0.5, 0.0)
    assert options.api_max_connections == 0
    with pytest.raises(OptionsError, match="--api-head-timeout"):
        parse_manage(RawManage(args=("nodes://127.0.0.1:2375",), api_head_timeout="soon"), {})
    with pytest.raises(OptionsError, match="--api-max-connections"):
        parse_manage(RawManage(args=("nodes://127.0.0.1:2375",), api_max_connections="-1"), {})
    with pytest.raises(OptionsError, match="--api-body-min-rate"):
        parse_manage(RawManage(args=("nodes://127.0.0.1:2375",), api_body_min_rate="0"), {})
