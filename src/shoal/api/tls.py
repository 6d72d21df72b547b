"""Server-side TLS over plain TCP that allows half-close, for hijacked docker connections.

Why not `ssl=` on the listener: asyncio's (and uvloop's) `sslproto` shuts the whole TLS
session down as soon as the peer sends a TLS close_notify or a TCP FIN. The docker CLI does
exactly that after it has sent stdin on a hijacked attach/exec connection (`CloseWrite`,
which for TLS half-closes the raw TCP socket, or sends close_notify), and still expects the
container's output afterwards: Go's TLS stack lets a side write after the peer's EOF. With
sslproto, `docker run --rm busybox echo hi` over `--tlsverify` prints nothing.

So the record layer is run here with the stdlib's `SSLContext.wrap_bio` and two
`MemoryBIO`s (no crypto of our own): `TLSServerProtocol` is the protocol of the raw TCP (or
unix) connection; after the handshake it drives an application protocol (an
`asyncio.StreamReaderProtocol`) through `TLSTransport`. A peer EOF (close_notify or FIN)
becomes EOF on the reader while writing stays possible; `write_eof()` sends our
close_notify and keeps reading. Flow control is passed through both ways, so a slow reader
pauses the socket and a slow client pauses the writer's `drain()`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT: Final = 30.0
_READ_SIZE: Final = 256 * 1024
_HTTP_STARTS: Final = frozenset((b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"))
"""Record headers that are really plain HTTP: the ones Go's server answers with a hint."""
PLAIN_HTTP_ANSWER: Final = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


class TLSTransport(asyncio.Transport):
    """What the application protocol sees: plaintext in, plaintext out, half-close allowed."""

    def __init__(self, tls: TLSServerProtocol) -> None:
        super().__init__()
        self._tls = tls

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.extra_info(name, default)

    def is_closing(self) -> bool:
        return self._tls.is_closing()

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._tls.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._tls.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._tls.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.raw_transport().get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.raw_transport().set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return self._tls.raw_transport().is_reading()

    def pause_reading(self) -> None:
        raw = self._tls.raw_transport()
        if not raw.is_closing():
            raw.pause_reading()

    def resume_reading(self) -> None:
        raw = self._tls.raw_transport()
        if not raw.is_closing():
            raw.resume_reading()


class TLSServerProtocol(asyncio.Protocol):
    """One raw connection: handshake, then records to and from `app`."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        pending: set[TLSServerProtocol] | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._context = context
        self._app = app
        self._pending = pending
        self._handshake_timeout = handshake_timeout
        self._raw: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._app_transport: TLSTransport | None = None
        self._closing = False
        self._eof_sent = False
        self._eof_received = False
        self._write_paused = False
        self._error: BaseException | None = None
        self._first: bytes | None = b""  # until 5 bytes tell TLS from plain HTTP

    def raw_transport(self) -> asyncio.Transport:
        assert self._raw is not None
        return self._raw

    # --- raw side -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)  # uvloop's aren't asyncio subclasses
        if self._pending is not None:
            self._pending.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._eof_received:
            return  # nothing more is read after a failed handshake or the peer's EOF
        if self._app_transport is None and self._first is not None:
            self._first += data
            if len(self._first) < 5:
                return
            data, self._first = self._first, None
            if data[:5] in _HTTP_STARTS:
                self._refuse_plain_http()
                return
        self._incoming.write(data)
        if self._app_transport is None:
            self._handshake()
        else:
            self._read_records()

    def eof_received(self) -> bool:
        if self._app_transport is None:
            logger.debug("TLS client closed the connection during the handshake")
            return False
        # Not passed to OpenSSL: it takes an EOF without close_notify as a fatal error and
        # would refuse to write from then on. Records already received were read.
        if self._incoming.pending:
            logger.debug("TLS client closed in the middle of a record")
        self._app_eof()
        return True  # keep the raw transport open: we may still write

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._pending is not None:
            self._pending.discard(self)
        if self._app_transport is not None:
            self._app_transport = None
            error = exc or self._error
            self._app.connection_lost(error if isinstance(error, Exception) else None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._app_transport is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._app_transport is not None:
            self._app.resume_writing()

    # --- handshake ----------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            peer = self._raw.get_extra_info("peername") if self._raw else None
            logger.debug("TLS handshake with %s failed: %s", peer or "client", exc)
            self._flush()  # the alert, so the client learns why
            self._closing = True
            self._cancel_timer()
            self.raw_transport().close()
            return
        self._cancel_timer()
        if self._pending is not None:
            self._pending.discard(self)
        self._flush()
        self._app_transport = TLSTransport(self)
        self._app.connection_made(self._app_transport)
        if self._write_paused:
            self._app.pause_writing()
        if self._incoming.pending:
            self._read_records()

    def _refuse_plain_http(self) -> None:
        """Answer plain HTTP as the engine does, so the client says why it failed."""
        logger.debug("plain HTTP request on a TLS listener")
        self._closing = True
        self._cancel_timer()
        raw = self.raw_transport()
        raw.write(PLAIN_HTTP_ANSWER)
        raw.close()

    def _handshake_expired(self) -> None:
        self._timer = None
        if self._app_transport is None and self._raw is not None:
            logger.debug("TLS handshake timed out")
            self._closing = True
            self._raw.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort_handshake(self) -> None:
        """Drop a connection still in its handshake (server shutdown)."""
        if self._app_transport is None and self._raw is not None:
            self._closing = True
            self._raw.abort()

    # --- records ------------------------------------------------------------------------

    def _read_records(self) -> None:
        if self._eof_received:
            return
        ssl_obj = self._ssl
        app = self._app
        incoming = self._incoming
        try:
            while True:
                data = ssl_obj.read(_READ_SIZE)
                if not data:  # close_notify (Python answers it with b"" while we still write)
                    self._flush()
                    self._app_eof()
                    return
                app.data_received(data)
                if not incoming.pending and not ssl_obj.pending():
                    break  # all consumed: skip the read that would raise SSLWantReadError
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # close_notify: EOF for reading only
            self._flush()
            self._app_eof()
            return
        except ssl.SSLError as exc:
            logger.debug("TLS record error: %s", exc)
            self._error = exc
            self._closing = True
            self._flush()
            self.raw_transport().abort()
            return
        self._flush()  # post-handshake messages (key updates) need answers

    def _app_eof(self) -> None:
        if self._eof_received or self._app_transport is None:
            return
        self._eof_received = True
        self._app.eof_received()  # its answer is ignored: writing stays possible

    def _flush(self) -> None:
        if self._outgoing.pending and self._raw is not None and not self._raw.is_closing():
            self._raw.write(self._outgoing.read())

    # --- what TLSTransport forwards -----------------------------------------------------

    def extra_info(self, name: str, default: Any) -> Any:
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "ssl_object":
            return self._ssl
        if name == "sslcontext":
            return self._context
        if name == "cipher":
            return self._ssl.cipher()
        if name == "compression":
            return self._ssl.compression()
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._eof_sent:
            return
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            logger.debug("TLS write failed: %s", exc)
            self._error = exc
            self.abort()
            return
        self._flush()

    def write_eof(self) -> None:
        """Send close_notify; reading goes on until the peer's EOF."""
        if self._eof_sent or self._closing:
            return
        self._eof_sent = True
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is out; the peer's may never come
        except (ssl.SSLError, ValueError) as exc:
            logger.debug("TLS shutdown: %s", exc)
        self._flush()

    def close(self) -> None:
        if self._closing:
            return
        if not self._eof_sent:
            self._eof_sent = True
            self._shutdown()
        self._closing = True
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def get_write_buffer_size(self) -> int:
        size = self._outgoing.pending
        if self._raw is not None:
            size += self._raw.get_write_buffer_size()
        return size


class TLSAcceptor:
    """Protocol factory for a TLS listener; owns the connections still in their handshake."""

    def __init__(
        self,
        context: ssl.SSLContext,
        app_factory: Callable[[], asyncio.Protocol],
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._context = context
        self._app_factory = app_factory
        self._timeout = handshake_timeout
        self._pending: set[TLSServerProtocol] = set()

    def __call__(self) -> TLSServerProtocol:
        return TLSServerProtocol(self._context, self._app_factory(), self._pending, self._timeout)

    def close(self) -> None:
        """Abort the handshakes in progress; established connections are the server's."""
        for proto in list(self._pending):
            proto.abort_handshake()
