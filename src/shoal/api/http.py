"""HTTP/1.1 message layer: request heads, bodies, response types, and the hijack splice.

Why hand-written instead of aiohttp's server: the Docker API hijacks connections
(`POST /containers/{id}/attach` and `POST /exec/{id}/start` with `Upgrade: tcp` answer
`101` and then carry raw bytes both ways), and aiohttp's server has no public API to
hand over the raw socket. So the server runs on asyncio streams: the head is read with
`reader.readuntil(b"\\r\\n\\r\\n")` and parsed by httptools (head_parser.py: a fresh parser fed
only the head, so the body of an upgrade request stays unread in the reader instead of being
swallowed as an "upgrade tail"), and bodies are read here, lazily, by the handler that
wants them (Content-Length or a small chunked decoder). This is on the hot path of
every request, so the code avoids work and allocations it does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

from multidict import CIMultiDict

HEAD_LIMIT: Final = 64 * 1024
"""Largest request head accepted (also the StreamReader limit of every connection)."""
BODY_LIMIT: Final = 16 * 2**20
"""Largest body read whole into memory (JSON bodies); archives are streamed instead."""
JSON_MAX_DEPTH: Final = 256
"""Deepest JSON nesting decoded; deeper answers 400 before decoding (no recursion limits hit)."""
PIECE: Final = 256 * 1024
"""Size of the pieces a body or a spliced stream is read in."""

_FALSE_FLAGS: Final = frozenset(("", "0", "no", "false", "none"))
_BODY_UNREAD, _BODY_READING, _BODY_DONE, _BODY_BROKEN = range(4)
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)

REASONS: Final[Mapping[int, str]] = MappingProxyType(
    {s.value: s.phrase for s in HTTPStatus} | {101: "UPGRADED"}
)
"""Reason phrases; 101 says `UPGRADED` as dockerd does."""


class HTTPError(Exception):
    """Raised anywhere in a handler to answer `status` with `{"message": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientDisconnected(ConnectionError):
    """The client went away while its request body was being read."""


class BodyTimeout(ClientDisconnected):
    """The client sent its request body too slowly; the connection is closed."""


@dataclass(frozen=True, slots=True)
class BodyPace:
    """How long a request body may take: `base` seconds plus one second per `rate` bytes.

    A body read as a stream (unknown or large size) must instead bring a piece every
    `base` seconds, so a slow but steady upload is never cut.
    """

    base: float = 60.0
    rate: float = 64 * 1024.0

    def budget(self, size: int) -> float:
        return self.base + size / self.rate


def json_depth_exceeds(data: bytes, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether `data` nests arrays/objects deeper than `limit`, without decoding it.

    Brackets are counted first (a C-speed count), so only bodies with many of them are
    scanned; the scan skips strings, whose brackets do not nest.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(data):
        first = token.group()[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif first in (b"]", b"}"):
            depth -= 1
    return False


@dataclass(slots=True)
class Request:
    """One request: the parsed head plus lazy access to the body still in the connection."""

    method: str
    target: str
    path: str
    api_version: str | None
    query: dict[str, list[str]]
    headers: CIMultiDict[str]
    raw_head: bytes
    http_version: str = "1.1"
    peer_cert: dict[str, Any] | None = None
    _reader: asyncio.StreamReader | None = field(default=None, repr=False, compare=False)
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False, compare=False)
    _remaining: int = field(default=0, repr=False, compare=False)
    """Content-Length left, or bytes left in the current chunk (0: a size line is next)."""
    _chunked: bool = field(default=False, repr=False, compare=False)
    _state: int = field(default=_BODY_DONE, repr=False, compare=False)
    _cached: bytes | None = field(default=None, repr=False, compare=False)
    _expect_continue: bool = field(default=False, repr=False, compare=False)
    _pace: BodyPace | None = field(default=None, repr=False, compare=False)

    def frame_body(self, pace: BodyPace | None) -> None:
        """Set up reading the body as the head frames it (chunked, Content-Length, `Expect:
        100-continue`), paced by `pace`; HTTPError 400 for a bad Content-Length."""
        self._pace = pace
        headers = self.headers
        te = headers.get("Transfer-Encoding")
        if te is not None and te.rsplit(",", 1)[-1].strip().lower() == "chunked":
            self._chunked = True
            self._state = _BODY_UNREAD
        else:
            cl = headers.get("Content-Length")
            if cl is not None:
                try:
                    size = int(cl)
                except ValueError as exc:
                    raise HTTPError(400, "invalid Content-Length") from exc
                if size < 0:
                    raise HTTPError(400, "invalid Content-Length")
                if size:
                    self._remaining = size
                    self._state = _BODY_UNREAD
        if self._state == _BODY_UNREAD:
            expect = headers.get("Expect")
            self._expect_continue = expect is not None and expect.lower() == "100-continue"

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter `name`."""
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        """Docker's boolean query rule: false iff absent or one of "", 0, no, false, none."""
        values = self.query.get(name)
        if not values:
            return False
        return values[0].lower() not in _FALSE_FLAGS

    @property
    def is_upgrade(self) -> bool:
        """`Connection: upgrade` together with an `Upgrade` header (attach, exec start)."""
        conn = self.headers.get("Connection")
        if conn is None or "Upgrade" not in self.headers:
            return False
        return any(t.strip().lower() == "upgrade" for t in conn.split(","))

    @property
    def body_complete(self) -> bool:
        """Whether nothing of the body is left in the connection."""
        return self._state == _BODY_DONE

    async def body(self, limit: int = BODY_LIMIT) -> bytes:
        """The whole body; HTTPError 413 when it is larger than `limit`."""
        if self._cached is not None:
            return self._cached
        if self._state != _BODY_UNREAD:
            if self._state == _BODY_DONE:
                self._cached = b""
                return b""
            raise RuntimeError("request body already consumed")
        if not self._chunked:
            size = self._remaining
            if size > limit:
                raise HTTPError(413, "request body too large")
            self._begin()
            assert self._reader is not None
            try:
                if self._pace is None:
                    data = await self._reader.readexactly(size)
                else:
                    async with asyncio.timeout(self._pace.budget(size)):
                        data = await self._reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                self._state = _BODY_BROKEN
                raise ClientDisconnected("client closed the connection mid-body") from exc
            except TimeoutError as exc:
                self._state = _BODY_BROKEN
                raise BodyTimeout(f"request body of {size} bytes not received in time") from exc
            self._remaining = 0
            self._state = _BODY_DONE
        else:
            self._begin()
            parts: list[bytes] = []
            total = 0
            while piece := await self._read_some(PIECE):
                total += len(piece)
                if total > limit:
                    raise HTTPError(413, "request body too large")
                parts.append(piece)
            data = b"".join(parts)
        self._cached = data
        return data

    async def json(self, limit: int = BODY_LIMIT) -> Any:
        """The body decoded as JSON; None for an empty body.

        413 when larger than `limit` (refused before it is read), 400 when nested deeper
        than JSON_MAX_DEPTH or not JSON.
        """
        data = await self.body(limit)
        if not data.strip():
            return None
        if json_depth_exceeds(data):
            raise HTTPError(400, "invalid JSON: exceeded max depth")
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise HTTPError(400, f"invalid JSON: {exc.msg} at offset {exc.pos}") from exc
        except (ValueError, RecursionError) as exc:  # undecodable bytes, or deep despite the scan
            raise HTTPError(400, "invalid JSON: the body is not valid UTF-8 JSON") from exc

    async def stream(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive (build contexts, image load and import)."""
        if self._cached is not None:
            if self._cached:
                yield self._cached
            return
        if self._state == _BODY_DONE:
            return
        if self._state != _BODY_UNREAD:
            raise RuntimeError("request body already consumed")
        self._begin()
        while piece := await self._read_some(PIECE):
            yield piece

    def _begin(self) -> None:
        self._state = _BODY_READING
        if self._expect_continue and self._writer is not None:
            self._expect_continue = False
            self._writer.write(_CONTINUE)

    async def _read_some(self, max_n: int) -> bytes:
        """Next piece of body, b"" at its end; each piece must come within the pace's base."""
        if self._pace is None or self._state == _BODY_DONE:
            return await self._read_piece(max_n)
        try:
            async with asyncio.timeout(self._pace.base):
                return await self._read_piece(max_n)
        except TimeoutError as exc:
            self._state = _BODY_BROKEN
            raise BodyTimeout("request body stalled") from exc

    async def _read_piece(self, max_n: int) -> bytes:
        """Next piece of body, b"" at its end; keeps the chunked decoder's position."""
        if self._state == _BODY_DONE:
            return b""
        reader = self._reader
        assert reader is not None
        try:
            if self._chunked:
                while self._remaining == 0:
                    line = await reader.readuntil(b"\r\n")
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        size = -1
                    if size < 0:
                        self._state = _BODY_BROKEN
                        raise HTTPError(400, "invalid chunked encoding")
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                            pass
                        self._state = _BODY_DONE
                        return b""
                    self._remaining = size
            elif self._remaining == 0:
                self._state = _BODY_DONE
                return b""
            data = await reader.read(min(self._remaining, max_n))
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            self._remaining -= len(data)
            if self._remaining == 0:
                if not self._chunked:
                    self._state = _BODY_DONE
                elif await reader.readexactly(2) != b"\r\n":
                    self._state = _BODY_BROKEN
                    raise HTTPError(400, "invalid chunked encoding")
            return data
        except asyncio.IncompleteReadError as exc:
            self._state = _BODY_BROKEN
            raise ClientDisconnected("client closed the connection mid-body") from exc
        except asyncio.LimitOverrunError as exc:
            self._state = _BODY_BROKEN
            raise HTTPError(400, "invalid chunked encoding") from exc

    def can_discard(self, max_bytes: int) -> bool:
        """Whether discard_body(max_bytes) may leave the connection usable (cheap check)."""
        if self._state == _BODY_DONE:
            return True
        if self._state == _BODY_BROKEN or self._expect_continue:
            return False
        return self._chunked or self._remaining <= max_bytes

    async def discard_body(self, max_bytes: int) -> bool:
        """Read and drop what is left of the body, up to `max_bytes`.

        True when the connection is then positioned at the next request.
        """
        if self._state == _BODY_DONE:
            return True
        if self._state == _BODY_BROKEN or self._expect_continue:
            return False
        if not self._chunked and self._remaining > max_bytes:
            return False
        self._state = _BODY_READING
        total = 0
        try:
            while piece := await self._read_some(PIECE):
                total += len(piece)
                if total > max_bytes:
                    return False
        except (HTTPError, ConnectionError):
            return False
        return True


@dataclass(slots=True)
class Response:
    """A complete response, sent with Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json"


@dataclass(slots=True)
class StreamResponse:
    """A response whose body is produced over time, sent chunked.

    The head goes out before the first chunk is asked for (`docker run` waits on the
    head of `/wait`). Each chunk is flushed as it comes; an empty chunk only flushes.
    When the client goes away the iterator is closed, which cancels upstream work.
    """

    status: int
    body: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json"


@dataclass(slots=True)
class Hijack:
    """Hand the raw connection to `run`; the request body is still unread in the reader.

    `run` writes its own response (e.g. `101 UPGRADED`); the server closes the connection
    when it returns.
    """

    run: Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


Handler = Callable[[Request], Awaitable[Response | StreamResponse | Hijack]]

_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def json_response(
    obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    """Compact JSON plus a newline, as dockerd writes it."""
    body = (_encode_json(obj) + "\n").encode()
    return Response(status, body, headers if headers is not None else [])


def error_response(status: int, message: str) -> Response:
    """`{"message": ...}` with `status`."""
    return json_response({"message": message}, status)


def make_request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Request:
    """A Request built in memory, for tests of handlers: the body is served from a buffer.

    Call it with a running event loop.
    """
    lines = [f"{method} {target} HTTP/1.1"]
    hdrs = list(headers or [])
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hdrs]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    reader = asyncio.StreamReader(limit=HEAD_LIMIT)
    reader.feed_data(body)
    reader.feed_eof()
    from shoal.api.head_parser import HeadParser  # the parser module imports this one

    request, _ = HeadParser().parse(head, reader)
    return request


async def splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
    *,
    upgrade_pause: float = 0.0,
) -> None:
    """Copy bytes both ways until both directions end, then close both connections.

    At EOF in one direction the other side's write half is closed (FIN, or close_notify on
    a TLS listener, see tls.py) and the other direction keeps going. An error in either
    direction ends both. With `upgrade_pause`, b's answer head is passed on alone and, if
    it is a `101`, b's stream follows only that many seconds later.
    """
    up = asyncio.ensure_future(_copy(a_reader, b_writer))
    down = asyncio.ensure_future(
        _copy_answer(b_reader, a_writer, upgrade_pause)
        if upgrade_pause
        else _copy(b_reader, a_writer)
    )
    try:
        pending: set[asyncio.Future[None]] = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(not t.cancelled() and t.exception() is not None for t in done):
                break
    finally:
        for t in (up, down):
            t.cancel()
        for t in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for w in (a_writer, b_writer):
            w.close()


async def _copy_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pause: float
) -> None:
    """An answer's head alone, a pause after an upgrade's head, then the rest as `_copy`."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        head = exc.partial  # closed before a whole head: passed on, then the EOF
    except asyncio.LimitOverrunError:
        head = b""  # no head within the limit: left in the buffer for `_copy`
    if head:
        writer.write(head)
        await writer.drain()
        if head.startswith(b"HTTP/1.1 101"):
            await asyncio.sleep(pause)
    await _copy(reader, writer)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One splice direction: copy until EOF, then half-close the destination."""
    transport = writer.transport
    while data := await reader.read(PIECE):
        if transport.is_closing():
            raise ConnectionResetError("destination closed")
        writer.write(data)
        await writer.drain()
    if not transport.is_closing() and writer.can_write_eof():
        writer.write_eof()
