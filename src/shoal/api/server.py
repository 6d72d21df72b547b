"""API listeners (one per -H, TCP or unix, TLS on all) and the per-connection HTTP loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shoal.api.head_parser import HeadParser
from shoal.api.heads import HeadReader, HeadTimeout
from shoal.api.http import (
    HEAD_LIMIT,
    BodyPace,
    BodyTimeout,
    ClientDisconnected,
    Handler,
    Hijack,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    error_response,
)
from shoal.api.response_writer import DateClock, linger, write_response, write_stream
from shoal.api.tls import TLSAcceptor
from shoal.api.versions import version_response
from shoal.durations import parse_duration
from shoal.flag_values import DEFAULTS

logger = logging.getLogger(__name__)

DISCARD_LIMIT: Final = 256 * 1024
"""An unread request body up to this size is skipped to keep the connection; larger closes."""

VersionRange = Callable[[], tuple[str, str]]
"""Returns the (minimum, maximum) API version clients may ask for, e.g. ("1.12", "1.41")."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What a client may cost the server; every value is a `manage` flag.

    Timeouts are seconds, 0 meaning none. Hijacked and streamed responses are exempt once
    their head is sent: they stay open as long as they carry data or wait for it.
    """

    head_timeout: float = parse_duration(DEFAULTS.api_head_timeout)
    """From accepting a connection, or from the first line of a following request, until
    the request head is complete."""
    idle_timeout: float = parse_duration(DEFAULTS.api_idle_timeout)
    """How long a keep-alive connection may wait for its next request."""
    body: BodyPace = field(default_factory=lambda: BodyPace(
        parse_duration(DEFAULTS.api_body_timeout), float(DEFAULTS.api_body_min_rate)))
    max_connections: int = int(DEFAULTS.api_max_connections)
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


async def serve_connection(
    handler: Handler,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: DateClock | None = None,
    limits: ServerLimits | None = None,
    versions: VersionRange | None = None,
) -> None:
    """Serve requests on one connection until it closes, is hijacked or must close.

    With `versions`, a `/vX.Y` prefix outside that range answers 400 as the engine does.
    """
    clock = clock or DateClock()
    limits = limits or ServerLimits()
    heads = HeadReader(reader, writer.transport)
    try:
        await _Connection(handler, heads, writer, clock, limits, versions).serve()
    finally:
        heads.close()


class _Connection:
    """The request loop of one connection: read a head, answer it, keep going while alive."""

    __slots__ = (
        "_clock",
        "_handler",
        "_heads",
        "_limits",
        "_parser",
        "_peer_cert",
        "_versions",
        "_writer",
    )

    def __init__(
        self,
        handler: Handler,
        heads: HeadReader,
        writer: asyncio.StreamWriter,
        clock: DateClock,
        limits: ServerLimits,
        versions: VersionRange | None,
    ) -> None:
        self._handler = handler
        self._heads = heads
        self._writer = writer
        self._clock = clock
        self._limits = limits
        self._versions = versions
        self._parser = HeadParser(limits.body if limits.body.base else None)  # base 0: no limit
        self._peer_cert = writer.get_extra_info("peercert") or None

    async def serve(self) -> None:
        """Serve requests until the connection closes, is hijacked or must close."""
        heads, writer, parser, peer_cert = self._heads, self._writer, self._parser, self._peer_cert
        head_timeout = self._limits.head_timeout
        first_wait = head_timeout  # a new connection owes its head at once
        while True:
            try:
                head = await heads.read_head(first_wait, head_timeout)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, HeadTimeout) as exc:
                await self._no_head(exc)
                return
            first_wait = self._limits.idle_timeout
            try:
                request, keep_alive = parser.parse(head, heads.reader, writer, peer_cert)
            except HTTPError as exc:
                await self._refuse(exc.status, exc.message)
                return
            response = await self._answer(request)
            if response is None or not await self._send(request, response, keep_alive):
                return
            if not request.body_complete and not await request.discard_body(DISCARD_LIMIT):
                return

    async def _no_head(self, exc: Exception) -> None:
        """Close for a head that did not come: EOF, too large (431), or too slow."""
        if isinstance(exc, asyncio.LimitOverrunError):
            await self._refuse(431, "request header too large")
        elif isinstance(exc, HeadTimeout):
            logger.debug("closing a connection: no complete request head in time")
        elif isinstance(exc, asyncio.IncompleteReadError) and exc.partial.strip():
            logger.debug("client closed the connection in the middle of a request head")

    async def _refuse(self, status: int, message: str) -> None:
        """Answer a head that cannot be served, closing the connection."""
        await write_response(
            self._writer, None, error_response(status, message), False, self._clock()
        )

    async def _answer(self, request: Request) -> Response | StreamResponse | Hijack | None:
        """The handler's answer, or the version refusal; None when the connection is lost."""
        refusal = None
        if self._versions is not None and request.api_version is not None:
            refusal = version_response(request.api_version, *self._versions())
        try:
            return refusal or await self._handler(request)
        except HTTPError as exc:
            logger.debug("HTTP error: %s (status %d)", exc.message, exc.status)
            return error_response(exc.status, exc.message)
        except BodyTimeout as exc:
            logger.info("closing a connection in %s %s: %s", request.method, request.path, exc)
        except (ClientDisconnected, ConnectionError, ssl.SSLError) as exc:
            logger.debug("client connection lost in %s %s: %s", request.method, request.path, exc)
        except Exception as exc:
            logger.error("HTTP error: %s", exc, exc_info=True)
            return error_response(500, str(exc) or type(exc).__name__)
        return None

    async def _send(
        self, request: Request, response: Response | StreamResponse | Hijack, keep_alive: bool
    ) -> bool:
        """Send `response`; True when the connection can serve another request."""
        if isinstance(response, StreamResponse):
            return await write_stream(
                self._heads, self._writer, request, response, keep_alive, self._clock()
            )
        if isinstance(response, Response):
            if keep_alive and not request.body_complete and not request.can_discard(DISCARD_LIMIT):
                keep_alive = False  # say so in the answer, not by a silent close after it
            await write_response(self._writer, request, response, keep_alive, self._clock())
            if not keep_alive and not request.body_complete:
                await linger(self._heads.reader, self._writer)
            return keep_alive
        await self._hijack(request, response)
        return False

    async def _hijack(self, request: Request, hijack: Hijack) -> None:
        """Hand the connection to the hijacking handler; the connection closes after it."""
        heads = self._heads
        if heads.has_pending:  # cannot happen: a head read takes every pushed-back byte
            logger.error("HTTP error: bytes left before a hijacked %s", request.path)
            return
        try:
            await hijack.run(request, heads.reader, self._writer)
        except (ClientDisconnected, ConnectionError, ssl.SSLError) as exc:
            logger.debug("hijacked connection lost: %s", exc)
        except Exception as exc:
            logger.error("HTTP error: hijacked %s failed: %s", request.path, exc, exc_info=True)


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
        self._clock = DateClock()
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
