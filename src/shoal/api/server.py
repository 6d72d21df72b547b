"""API listeners (one per -H, TCP or unix, TLS on all) and the per-connection HTTP loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Final

from shoal.api.heads import HeadReader, HeadTimeout
from shoal.api.http import (
    HEAD_LIMIT,
    REASONS,
    BodyPace,
    BodyTimeout,
    ClientDisconnected,
    Handler,
    HeadParser,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    error_response,
    version_response,
)
from shoal.api.tls import TLSAcceptor

logger = logging.getLogger(__name__)

DISCARD_LIMIT: Final = 256 * 1024
"""An unread request body up to this size is skipped to keep the connection; larger closes."""
_INLINE_BODY: Final = 16 * 1024
_NO_BODY_STATUS: Final = frozenset((204, 304))
_FRAMING_HEADERS: Final = frozenset(("content-length", "transfer-encoding", "connection"))
_LINGER: Final = 2.0
"""After an error answered before the body was read, how long its rest is drained so the
client (still sending) reads the answer instead of a connection reset."""
_LINGER_BYTES: Final = 64 * 2**20

VersionRange = Callable[[], tuple[str, str]]
"""Returns the (minimum, maximum) API version clients may ask for, e.g. ("1.12", "1.41")."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What a client may cost the server; every value is a `manage` flag.

    Timeouts are seconds, 0 meaning none. Hijacked and streamed responses are exempt once
    their head is sent: they stay open as long as they carry data or wait for it.
    """

    head_timeout: float = 30.0
    """From accepting a connection, or from the first line of a following request, until
    the request head is complete."""
    idle_timeout: float = 120.0
    """How long a keep-alive connection may wait for its next request."""
    body: BodyPace = field(default_factory=BodyPace)
    max_connections: int = 2048
    """Open client connections; more are closed at once (0: no cap)."""


@dataclass(frozen=True, slots=True)
class Listener:
    """Where one -H value listens."""

    proto: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def address(self) -> str:
        if self.proto == "unix":
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host(value: str) -> Listener:
    """Parse `tcp://host:port`, `host:port`, `:port` (all interfaces) or `unix:///path`."""
    proto, sep, rest = value.partition("://")
    if not sep:
        proto, rest = "tcp", value
    if proto == "unix":
        if not rest:
            raise ValueError(f"missing socket path in {value!r}")
        return Listener("unix", path=rest)
    if proto != "tcp":
        raise ValueError(f'unsupported protocol: "{proto}"')
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        raise ValueError(f'missing port in address "{rest}"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'too many colons in address "{rest}"')
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'invalid port "{port_text}" in address "{rest}"')
    return Listener("tcp", host or "0.0.0.0", int(port_text))


def _load_pair(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        # A password callback stops OpenSSL from prompting on the terminal for encrypted keys.
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        message = f"Couldn't load X509 key pair ({cert}, {key}): {exc}. Key encrypted?"
        raise ValueError(message) from exc


def _load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"Couldn't read CA certificate: {exc}") from exc


def _context(
    protocol: ssl._SSLMethod, cert: str, key: str, ca: str | None, verify: bool
) -> ssl.SSLContext:
    """TLS >= 1.2 with ALPN http/1.1, our certificate, and with `verify` the CA to trust."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    _load_pair(ctx, cert, key)
    if verify:
        if not ca:
            raise ValueError("--tlscacert must be provided when using --tlsverify")
        _load_ca(ctx, ca)
    return ctx


def make_server_ssl_context(cert: str, key: str, ca: str | None, verify: bool) -> ssl.SSLContext:
    """TLS >= 1.2, ALPN http/1.1; with `verify`, client certificates signed by `ca` are required.

    Raises ValueError with classic Swarm's messages.
    """
    ctx = _context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca, verify)
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def make_client_ssl_context(cert: str, key: str, ca: str | None, verify: bool) -> ssl.SSLContext:
    """For outgoing engine and primary connections: presents the same certificate.

    With `verify` the peer is checked against `ca` (host name included); without, not at all.
    """
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, cert, key, ca, verify)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _DateClock:
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


async def _write_response(
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
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _await_cancelled(task: asyncio.Task[None] | asyncio.Task[bytes]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


async def _write_stream(
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
    watcher: asyncio.Task[bytes] | None = None
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
        # A client that leaves sends EOF; watching for it cancels e.g. an idle /events stream.
        watcher = asyncio.ensure_future(heads.reader.read(1))
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
        if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
            taken = watcher.result()
            if not taken:
                if not pump.done():
                    logger.debug("client went away during a streamed response")
                    return False
            else:
                # The start of the client's next request (it may send it as soon as the last
                # chunk arrives): give it back for the next head read.
                heads.unread(taken)
        elif watcher.done():
            return False
        await pump
        pump.result()
        return keep_alive
    except (ConnectionError, ssl.SSLError) as exc:
        logger.debug("client connection lost during a streamed response: %s", exc)
        return False
    except Exception as exc:
        logger.error("HTTP error: streamed response failed: %s", exc, exc_info=True)
        return False
    finally:
        if watcher is not None:
            await _await_cancelled(watcher)
        if pump is not None:
            await _await_cancelled(pump)
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception as exc:
                logger.debug("closing a response stream failed: %s", exc)


async def serve_connection(
    handler: Handler,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: _DateClock | None = None,
    limits: ServerLimits | None = None,
    versions: VersionRange | None = None,
) -> None:
    """Serve requests on one connection until it closes, is hijacked or must close.

    With `versions`, a `/vX.Y` prefix outside that range answers 400 as the engine does.
    """
    clock = clock or _DateClock()
    limits = limits or ServerLimits()
    heads = HeadReader(reader, writer.transport)
    try:
        await _serve_requests(handler, heads, writer, clock, limits, versions)
    finally:
        heads.close()


async def _serve_requests(
    handler: Handler,
    heads: HeadReader,
    writer: asyncio.StreamWriter,
    clock: _DateClock,
    limits: ServerLimits,
    versions: VersionRange | None,
) -> None:
    reader = heads.reader
    parser = HeadParser(limits.body if limits.body.base else None)  # base 0: no body limit
    peer_cert = writer.get_extra_info("peercert") or None
    first_wait = limits.head_timeout  # a new connection owes its head at once
    while True:
        try:
            head = await heads.read_head(first_wait, limits.head_timeout)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                logger.debug("client closed the connection in the middle of a request head")
            return
        except asyncio.LimitOverrunError:
            await _write_response(
                writer, None, error_response(431, "request header too large"), False, clock()
            )
            return
        except HeadTimeout:
            logger.debug("closing a connection: no complete request head in time")
            return
        first_wait = limits.idle_timeout
        try:
            request, keep_alive = parser.parse(head, reader, writer, peer_cert)
        except HTTPError as exc:
            await _write_response(
                writer, None, error_response(exc.status, exc.message), False, clock()
            )
            return
        refusal = None
        if versions is not None and request.api_version is not None:
            refusal = version_response(request.api_version, *versions())
        try:
            response = refusal or await handler(request)
        except HTTPError as exc:
            logger.debug("HTTP error: %s (status %d)", exc.message, exc.status)
            response = error_response(exc.status, exc.message)
        except BodyTimeout as exc:
            logger.info("closing a connection in %s %s: %s", request.method, request.path, exc)
            return
        except (ClientDisconnected, ConnectionError, ssl.SSLError) as exc:
            logger.debug("client connection lost in %s %s: %s", request.method, request.path, exc)
            return
        except Exception as exc:
            logger.error("HTTP error: %s", exc, exc_info=True)
            response = error_response(500, str(exc) or type(exc).__name__)
        if isinstance(response, StreamResponse):
            if not await _write_stream(heads, writer, request, response, keep_alive, clock()):
                return
        elif isinstance(response, Response):
            if keep_alive and not request.body_complete and not request.can_discard(DISCARD_LIMIT):
                keep_alive = False  # say so in the answer, not by a silent close after it
            await _write_response(writer, request, response, keep_alive, clock())
            if not keep_alive:
                if not request.body_complete:
                    await _linger(reader, writer)
                return
        else:  # Hijack
            if heads.has_pending:  # cannot happen: a head read takes every pushed-back byte
                logger.error("HTTP error: bytes left before a hijacked %s", request.path)
                return
            try:
                await response.run(request, reader, writer)
            except (ClientDisconnected, ConnectionError, ssl.SSLError) as exc:
                logger.debug("hijacked connection lost: %s", exc)
            except Exception as exc:
                logger.error("HTTP error: hijacked %s failed: %s", request.path, exc, exc_info=True)
            return
        if not request.body_complete and not await request.discard_body(DISCARD_LIMIT):
            return


class APIServer:
    """One listener per host, all serving `handler`; owns its connections and their tasks."""

    def __init__(
        self,
        handler: Handler,
        hosts: list[str],
        ssl_context: ssl.SSLContext | None = None,
        limits: ServerLimits | None = None,
        versions: VersionRange | None = None,
    ) -> None:
        self._handler = handler
        self._limits = limits or ServerLimits()
        self._versions = versions
        self._at_cap = False
        self._refused = 0
        self._hosts = list(hosts)
        self._ssl = ssl_context
        self._servers: list[tuple[Listener, asyncio.Server]] = []
        self._unix_paths: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._acceptors: list[TLSAcceptor] = []
        self._clock = _DateClock()
        self._closing = False

    @property
    def addresses(self) -> list[str]:
        """Bound addresses as URLs (`tcp://127.0.0.1:41234`, `unix:///run/x.sock`)."""
        out: list[str] = []
        for listener, server in self._servers:
            if listener.proto == "unix":
                out.append(f"unix://{listener.path}")
                continue
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append(f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}")
        return out

    async def start(self) -> None:
        """Bind every listener; on any failure, close those already bound and raise."""
        listeners = [(host, parse_host(host)) for host in self._hosts]
        try:
            for host, listener in listeners:
                await self._listen(host, listener)
        except BaseException:
            await self.close()
            raise

    async def _listen(self, host: str, listener: Listener) -> None:
        try:
            if self._ssl is not None:
                server = await self._listen_tls(listener, self._ssl)
            elif listener.proto == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(listener.path)
                server = await asyncio.start_unix_server(
                    self._on_connection, path=listener.path, limit=HEAD_LIMIT
                )
                self._unix_paths.append(listener.path)
                os.chmod(listener.path, 0o600)
            else:
                server = await asyncio.start_server(
                    self._on_connection,
                    listener.host,
                    listener.port,
                    limit=HEAD_LIMIT,
                    backlog=1024,
                )
        except OSError as exc:
            message = f"listen {listener.proto} {listener.address}: {exc.strerror or exc}"
            if ":2375" in host and exc.errno == errno.EADDRINUSE:
                message += ": is Docker already running on this machine? Try using a different port"
            raise OSError(exc.errno, message) from exc
        self._servers.append((listener, server))
        logger.info(
            "Listening for HTTP proto=%s addr=%s",
            listener.proto,
            listener.address,
            extra={"proto": listener.proto, "addr": listener.address},
        )

    async def _listen_tls(self, listener: Listener, context: ssl.SSLContext) -> asyncio.Server:
        """TLS done by `tls.TLSAcceptor` over a plain listener, for half-close (see tls.py)."""

        def app_protocol() -> asyncio.Protocol:
            reader = asyncio.StreamReader(limit=HEAD_LIMIT)
            return asyncio.StreamReaderProtocol(reader, self._on_connection)

        acceptor = TLSAcceptor(context, app_protocol)
        loop = asyncio.get_running_loop()
        if listener.proto == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listener.path)
            server = await loop.create_unix_server(acceptor, path=listener.path)
            self._unix_paths.append(listener.path)
            os.chmod(listener.path, 0o600)
        else:
            server = await loop.create_server(acceptor, listener.host, listener.port, backlog=1024)
        self._acceptors.append(acceptor)
        return server

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback starting our own task: the task is owned here, and cancelling it
        # on close() does not trip asyncio's handling of a cancelled client_connected_cb.
        if self._closing:
            writer.close()
            return
        cap = self._limits.max_connections
        if cap and len(self._tasks) >= cap:
            self._refuse(writer, cap)
            return
        if self._at_cap:
            self._at_cap = False
            logger.info(
                "Connection limit no longer reached: %d connections refused meanwhile",
                self._refused,
            )
            self._refused = 0
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, writer: asyncio.StreamWriter, cap: int) -> None:
        """Close a connection over the cap at once; logged when the cap is first reached."""
        self._refused += 1
        if not self._at_cap:
            self._at_cap = True
            peer = writer.get_extra_info("peername")
            logger.warning(
                "Connection limit reached: %d open connections (--api-max-connections); "
                "closing new connections (first from %s) until some close",
                cap,
                peer or "a client",
            )
        writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await serve_connection(
                self._handler, reader, writer, self._clock, self._limits, self._versions
            )
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            logger.debug("client connection lost: %s", exc)
        except Exception as exc:
            logger.error("HTTP connection failed: %s", exc, exc_info=True)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        """Stop listening, close every connection, cancel their tasks, remove unix sockets."""
        self._closing = True
        for _, server in self._servers:
            server.close()
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors.clear()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._unix_paths.clear()
