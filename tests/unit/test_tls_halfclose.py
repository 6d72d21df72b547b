"""TLS listeners keep writing after the client's half-close, as the docker CLI needs.

The client here is built like Go's: TLS records over a plain socket (`wrap_bio`), so it can
shut down the raw TCP write side (docker's `tlsClientCon.CloseWrite`) or send close_notify
and keep reading. Every scenario runs on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from shoal.api.http import Hijack, Request, Response, json_response, splice
from shoal.api.router import Router
from shoal.api.server import APIServer, make_client_ssl_context, make_server_ssl_context
from shoal.api.tls import TLSAcceptor
from tests.certs import CertPaths, make_ca_and_certs

TIMEOUT = 10.0
UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)
Runner = Callable[[Coroutine[Any, Any, None]], None]
RUNNERS = [pytest.param(asyncio.run, id="asyncio"), pytest.param(uvloop.run, id="uvloop")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(tmp_path_factory.mktemp("certs"))


class BioClient:
    """A TLS client over a plain stream whose TCP write side the test can shut down."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.buffer = b""
        self.eof = False

    @classmethod
    async def connect(cls, address: str, ctx: ssl.SSLContext) -> BioClient:
        if address.startswith("unix://"):
            reader, writer = await asyncio.open_unix_connection(address[7:])
        else:
            host, port = address[6:].rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
        client = cls(reader, writer, ctx)
        await client.handshake()
        return client

    def flush(self) -> None:
        if self.outgoing.pending:
            self.writer.write(self.outgoing.read())

    async def _feed(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                await self._feed()

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.flush()

    def close_write_tcp(self) -> None:
        """Go's docker CLI: FIN on the raw socket, no close_notify."""
        self.writer.write_eof()

    def close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self.flush()

    async def read_more(self) -> bool:
        """Decrypt what arrives next; False at EOF (close_notify or raw EOF)."""
        while not self.eof:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.flush()
                await self._feed()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            if not data:
                self.eof = True
                return False
            self.buffer += data
            return True
        return False

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self.read_more():
                raise asyncio.IncompleteReadError(self.buffer, None)
        i = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    async def read_to_eof(self) -> bytes:
        while await self.read_more():
            pass
        out, self.buffer = self.buffer, b""
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def _upper_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An 'engine' that answers stdin only once stdin is closed, like `cat | tr`."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"POST /v1.41/attach ")
    stdin = await reader.read()
    writer.write(UPGRADED + b"out:" + stdin.upper())
    await writer.drain()
    writer.close()


def build_router(backend_port: list[int], uploads: list[tuple[bool, int]]) -> Router:
    router = Router()

    async def attach(request: Request, params: dict[str, str]) -> Hijack:
        async def run(
            req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", backend_port[0])
            b_writer.write(req.raw_head)
            await splice(reader, writer, b_reader, b_writer)

        return Hijack(run)

    async def echo_after_eof(request: Request, params: dict[str, str]) -> Hijack:
        async def run(
            req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(UPGRADED)
            got = await reader.read()
            writer.write(b"got %d bytes\n" % len(got))
            await writer.drain()

        return Hijack(run)

    async def slow_upload(request: Request, params: dict[str, str]) -> Hijack:
        async def run(
            req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            # Flow control: the socket stops being read while nobody reads the body.
            paused = False
            for _ in range(1000):
                if not writer.transport.is_reading():
                    paused = True
                    break
                await asyncio.sleep(0.01)
            total = 0
            async for piece in req.stream():
                total += len(piece)
            uploads.append((paused, total))
            body = json_response({"len": total}).body
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()

        return Hijack(run)

    async def big(request: Request, params: dict[str, str]) -> Response:
        return Response(200, b"x" * int(request.arg("n") or 0), content_type="text/plain")

    async def cn(request: Request, params: dict[str, str]) -> Response:
        subject = dict(x[0] for x in (request.peer_cert or {}).get("subject", ()))
        return json_response({"cn": subject.get("commonName")})

    router.add("POST", "/attach", attach)
    router.add("POST", "/echo-after-eof", echo_after_eof)
    router.add("POST", "/upload", slow_upload)
    router.add("GET", "/big", big)
    router.add("GET", "/cn", cn)
    return router


async def _with_server(
    certs: CertPaths,
    tmp_path: Path,
    scenario: Callable[[list[str], list[tuple[bool, int]]], Awaitable[None]],
    verify: bool = True,
) -> None:
    backend = await asyncio.start_server(_upper_backend, "127.0.0.1", 0)
    backend_port = [backend.sockets[0].getsockname()[1]]
    uploads: list[tuple[bool, int]] = []
    ctx = make_server_ssl_context(certs.cert, certs.key, certs.ca if verify else None, verify)
    server = APIServer(
        build_router(backend_port, uploads),
        ["127.0.0.1:0", f"unix://{tmp_path / 's.sock'}"],
        ctx,
    )
    await server.start()
    try:
        await asyncio.wait_for(scenario(server.addresses, uploads), 60)
    finally:
        await server.close()
        backend.close()
        await backend.wait_closed()


def _client_ctx(certs: CertPaths) -> ssl.SSLContext:
    return make_client_ssl_context(certs.client_cert, certs.client_key, certs.ca, verify=True)


def _attach(path: str, body: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("how", ["tcp-fin", "close-notify"])
@pytest.mark.parametrize("listener", [0, 1], ids=["tcp", "unix"])
def test_output_after_client_half_close(
    certs: CertPaths, tmp_path: Path, run: Runner, how: str, listener: int
) -> None:
    async def scenario(addresses: list[str], uploads: list[tuple[bool, int]]) -> None:
        client = await BioClient.connect(addresses[listener], _client_ctx(certs))
        client.send(_attach("/v1.41/attach", b"hello "))
        client.send(b"world")
        if how == "tcp-fin":
            client.close_write_tcp()
        else:
            client.close_notify()
        head = await client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        # The backend answers only after stdin EOF: this output follows the half-close,
        # and the stream then ends with the server's close_notify.
        assert await client.read_to_eof() == b"out:HELLO WORLD"
        await client.close()

    run(_with_server(certs, tmp_path, scenario))


@pytest.mark.parametrize("run", RUNNERS)
def test_no_stdin_half_close_right_after_request(
    certs: CertPaths, tmp_path: Path, run: Runner
) -> None:
    """`docker run --rm busybox echo hi`: CloseWrite follows the request at once."""

    async def scenario(addresses: list[str], uploads: list[tuple[bool, int]]) -> None:
        client = await BioClient.connect(addresses[0], _client_ctx(certs))
        client.send(_attach("/echo-after-eof"))
        client.close_write_tcp()
        assert await client.read_to_eof() == UPGRADED + b"got 0 bytes\n"
        await client.close()

    run(_with_server(certs, tmp_path, scenario))


@pytest.mark.parametrize("run", RUNNERS)
def test_client_certificate_still_required(certs: CertPaths, tmp_path: Path, run: Runner) -> None:
    async def scenario(addresses: list[str], uploads: list[tuple[bool, int]]) -> None:
        no_cert = ssl.create_default_context(cafile=certs.ca)
        answer = b""
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            client = await BioClient.connect(addresses[0], no_cert)
            # TLS 1.3: the client finishes first; the server's alert comes on the next read.
            client.send(b"GET /cn HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = await client.read_until(b"\r\n\r\n")
        assert answer == b""
        client = await BioClient.connect(addresses[0], _client_ctx(certs))
        client.send(b"GET /cn HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert await client.read_until(b"\n") == b'{"cn":"client"}\n'
        await client.close()

    run(_with_server(certs, tmp_path, scenario))


@pytest.mark.parametrize("run", RUNNERS)
def test_keep_alive_big_bodies_and_flow_control(
    certs: CertPaths, tmp_path: Path, run: Runner
) -> None:
    async def scenario(addresses: list[str], uploads: list[tuple[bool, int]]) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            int(addresses[0].rsplit(":", 1)[1]),
            ssl=_client_ctx(certs),
            server_hostname="localhost",
        )
        size = 5 * 2**20
        for _ in range(2):  # keep-alive: two big responses on one connection
            writer.write(f"GET /big?n={size} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"Content-Length: %d\r\n" % size in head
            assert await reader.readexactly(size) == b"x" * size
        # A 24 MiB upload the handler does not read at first: reading the socket pauses.
        upload = 24 * 2**20
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: tcp\r\nContent-Length: %d\r\n\r\n" % upload
        )
        piece = b"y" * 2**20
        for _ in range(upload // len(piece)):
            writer.write(piece)
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert uploads == [(True, upload)]
        writer.close()

    run(_with_server(certs, tmp_path, scenario, verify=False))


@pytest.mark.parametrize("run", RUNNERS)
def test_stalled_handshake_times_out_and_close_drops_pending(certs: CertPaths, run: Runner) -> None:
    async def scenario() -> None:
        ctx = make_server_ssl_context(certs.cert, certs.key, certs.ca, verify=True)

        def app() -> asyncio.Protocol:
            return asyncio.Protocol()

        loop = asyncio.get_running_loop()
        quick = TLSAcceptor(ctx, app, handshake_timeout=0.2)
        slow = TLSAcceptor(ctx, app, handshake_timeout=3600)
        servers = [await loop.create_server(a, "127.0.0.1", 0) for a in (quick, slow)]
        try:
            for server, acceptor in zip(servers, (quick, slow), strict=True):
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if acceptor is slow:
                    # Wait for the server side to exist, then drop it as a shutdown would.
                    for _ in range(1000):
                        if acceptor._pending:
                            break
                        await asyncio.sleep(0.01)
                    acceptor.close()
                # Silent client: the server gives up; the connection ends without a byte.
                assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
                writer.close()
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()

    run(scenario())
