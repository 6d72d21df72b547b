"""Request heads parsed into Requests: the one module that knows a head's wire format."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final
from urllib.parse import parse_qs, unquote_to_bytes

import httptools
from multidict import CIMultiDict

from shoal.api.http import BodyPace, HTTPError, Request

_VERSION_RE: Final = re.compile(r"/v([0-9]+(?:\.[0-9]+)*)(?=/|$)")


class _HeadCollector:
    """httptools callbacks; one per connection, reset for every request."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))


class HeadParser:
    """Turns a request head into a Request; one per connection.

    Heads with bare-LF line ends are accepted (as Go's server does) and normalised to CRLF.
    """

    __slots__ = ("_collector", "_pace")

    def __init__(self, pace: BodyPace | None = None) -> None:
        self._collector = _HeadCollector()
        self._pace = pace

    def parse(
        self,
        head: bytes,
        reader: asyncio.StreamReader | None = None,
        writer: asyncio.StreamWriter | None = None,
        peer_cert: dict[str, Any] | None = None,
    ) -> tuple[Request, bool]:
        """Parse `head` (ending in CRLFCRLF); returns the request and whether to keep alive.

        Raises HTTPError(400) for a malformed head.
        """
        if not head.endswith(b"\r\n\r\n") or head.count(b"\n") != head.count(b"\r\n"):
            head = _crlf(head)
        parser = self._feed(head)
        version: str = parser.get_http_version()
        url = self._collector.url
        path, api_version, query = _split_target(url)
        headers: CIMultiDict[str] = CIMultiDict(self._collector.headers)
        request = Request(
            parser.get_method().decode("latin-1"),
            url.decode("latin-1"),
            path,
            api_version,
            query,
            headers,
            head,
            version,
            peer_cert,
            reader,
            writer,
        )
        request.frame_body(self._pace)
        return request, _keep_alive(version, headers)

    def _feed(self, head: bytes) -> httptools.HttpRequestParser:
        """Run httptools over `head`; HTTPError 400 when it refuses it."""
        col = self._collector
        col.url = b""
        col.headers = []
        parser = httptools.HttpRequestParser(col)
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as exc:
            raise HTTPError(400, f"malformed HTTP request: {exc}") from exc
        return parser


def _split_target(url: bytes) -> tuple[str, str | None, dict[str, list[str]]]:
    """The request target as (path without its `/vX.Y` prefix, that version, query)."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError as exc:
        raise HTTPError(400, f"malformed request target: {url!r}") from exc
    raw_path: bytes = parsed.path or b"/"
    if b"%" in raw_path:
        raw_path = unquote_to_bytes(raw_path)
    path = raw_path.decode("utf-8", "surrogateescape")
    api_version = None
    if path.startswith("/v"):
        m = _VERSION_RE.match(path)
        if m is not None:
            api_version = m.group(1)
            path = path[m.end() :] or "/"
    raw_query: bytes | None = parsed.query
    query = (
        parse_qs(raw_query.decode("utf-8", "surrogateescape"), keep_blank_values=True)
        if raw_query
        else {}
    )
    return path, api_version, query


def _keep_alive(version: str, headers: CIMultiDict[str]) -> bool:
    """HTTP/1.1 without a `Connection: close` token.

    Decided from the head, because httptools' should_keep_alive() is reset once a body-less
    message completes.
    """
    keep_alive = version == "1.1"
    conn = headers.get("Connection")
    if conn is not None and keep_alive and "close" in conn.lower():
        keep_alive = not any(t.strip().lower() == "close" for t in conn.split(","))
    return keep_alive


def _crlf(head: bytes) -> bytes:
    """Rewrite every line end (LF or CRLF) as CRLF."""
    lines = head.split(b"\n")
    return b"\r\n".join(line[:-1] if line.endswith(b"\r") else line for line in lines)
