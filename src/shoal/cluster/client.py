"""HTTP to one dockerd: JSON calls, streamed proxying and raw sockets for hijacks.

aiohttp's client pools keep-alive connections per engine, over TCP, TLS or a unix
socket. Hijacked calls (attach, exec) need a connection of their own that is never
returned to a pool, so `open_raw` dials one directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from shoal.cluster.errors import EngineConnectionError, EngineError
from shoal.cluster.passthrough import RawPool

log = logging.getLogger(__name__)

#: The newest API version shoal speaks, to engines and to clients.
MAX_API_VERSION = "1.44"
CONNECT_TIMEOUT = 30.0
#: Bound on one background read (list, inspect, probe) over the raw pool.
READ_TIMEOUT = 30.0


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """Where an engine listens, from a discovery entry (`host:port`, `tcp://`, `unix://`)."""

    entry: str
    scheme: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, entry: str) -> EngineAddress:
        if entry.startswith("unix://"):
            return cls(entry, "unix", path=entry[len("unix://") :])
        text = entry
        for prefix in ("tcp://", "http://", "https://"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        parts = urlsplit("//" + text)
        if not parts.hostname or not parts.port:
            raise ValueError(f"invalid engine address {entry!r}: expected host:port")
        return cls(entry, "tcp", host=parts.hostname, port=parts.port)

    @property
    def ip_or_host(self) -> str:
        return self.host or "127.0.0.1"

    @property
    def display(self) -> str:
        """The `host:port` form classic Swarm shows; unix sockets show their URL."""
        return f"{self.host}:{self.port}" if self.scheme == "tcp" else self.entry


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class EngineClient:
    """The calls shoal makes to one engine; every failure is typed for health counting."""

    def __init__(self, address: EngineAddress, ssl_context: ssl.SSLContext | None) -> None:
        self.address = address
        self.ssl_context = ssl_context
        self.api_prefix = ""
        scheme = "https" if ssl_context is not None and address.scheme == "tcp" else "http"
        if address.scheme == "unix":
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                path=address.path, limit=64, keepalive_timeout=30
            )
            self.base_url = "http://docker"
        else:
            connector = aiohttp.TCPConnector(
                limit=64, ssl=ssl_context if ssl_context else False, keepalive_timeout=30
            )
            self.base_url = f"{scheme}://{address.host}:{address.port}"
        self.host_header = (
            f"{address.host}:{address.port}" if address.scheme == "tcp" else "docker"
        )
        #: Kept-alive raw connections: background reads and proxied requests share them.
        self.raw = RawPool(self)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        )

    async def close(self) -> None:
        await self.session.close()

    def set_api_version(self, engine_api: str) -> None:
        """Speak the older of the engine's version and ours, as Docker's clients negotiate."""
        if not engine_api:
            self.api_prefix = ""
            return
        chosen = min(engine_api, MAX_API_VERSION, key=version_tuple)
        self.api_prefix = f"/v{chosen}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
        versioned: bool = True,
    ) -> Any:
        """One JSON call; returns the decoded body (None when empty)."""
        url = self.base_url + (self.api_prefix if versioned else "") + path
        payload = data
        hdrs = dict(headers or {})
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                url,
                params=params,
                data=payload,
                headers=hdrs,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise EngineError(resp.status, error_message(raw, resp.status))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise EngineConnectionError(connection_error_text(self.address, exc)) from exc
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        versioned: bool = True,
        timeout: float = READ_TIMEOUT,
    ) -> Any:
        """A JSON read over the raw pool: a few bytes on a kept-alive connection, a
        fraction of `call`'s cost. The cache's lists, inspects and probes go this way."""
        target = (self.api_prefix if versioned else "") + path
        if params:
            target += "?" + urlencode(params)
        try:
            async with asyncio.timeout(timeout):
                status, raw = await self.raw.fetch("GET", target, self.host_header)
        except TimeoutError as exc:
            raise EngineConnectionError(connection_error_text(self.address, exc)) from exc
        if status >= 400:
            raise EngineError(status, error_message(raw, status))
        return decode_body(raw)

    async def stream_batches(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A long-lived JSON-lines stream such as `/events`, a batch per read."""
        url = self.base_url + self.api_prefix + path
        try:
            async with self.session.get(
                url,
                params=params,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=None
                ),
            ) as resp:
                if resp.status >= 400:
                    raise EngineError(resp.status, error_message(await resp.read(), resp.status))
                async for batch in json_batches(resp.content.iter_any()):
                    yield batch
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise EngineConnectionError(connection_error_text(self.address, exc)) from exc

    async def open_raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh connection for a hijacked call, never shared with the pool."""
        try:
            if self.address.scheme == "unix":
                return await asyncio.wait_for(
                    asyncio.open_unix_connection(self.address.path), CONNECT_TIMEOUT
                )
            return await asyncio.wait_for(
                asyncio.open_connection(
                    self.address.host,
                    self.address.port,
                    ssl=self.ssl_context,
                    server_hostname=self.address.host if self.ssl_context else None,
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise EngineConnectionError(connection_error_text(self.address, exc)) from exc


async def json_objects(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Concatenated JSON objects (events, progress streams) decoded as they complete.

    A trailing fragment that never completes comes out as `{"stream": text}`.
    """
    async for batch in json_batches(chunks):
        for obj in batch:
            yield obj


async def json_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[dict[str, Any]]]:
    """`json_objects`, a list per chunk read: what arrived while the reader was busy
    comes together, so the reader can look ahead (a container destroyed later in the
    batch needs no refresh before)."""
    decoder = json.JSONDecoder()
    buffer = ""
    async for chunk in chunks:
        buffer += chunk.decode(errors="replace")
        batch: list[dict[str, Any]] = []
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                break
            try:
                obj, end = decoder.raw_decode(buffer)
            except ValueError:
                break
            buffer = buffer[end:]
            if isinstance(obj, dict):
                batch.append(obj)
        if batch:
            yield batch
    if buffer.strip():
        yield [{"stream": buffer}]


def decode_body(raw: bytes) -> Any:
    """An engine's answer: JSON when it is an object or array, else text (`/_ping`'s OK).

    orjson decodes several times faster than `json`, and shares the strings of object keys
    between documents: tens of thousands of cached inspects hold one copy of each key.
    """
    if not raw:
        return None
    if raw[:1] not in (b"{", b"["):
        raw = raw.strip()
        if raw[:1] not in (b"{", b"["):
            return raw.decode(errors="replace")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)  # what orjson refuses
        except ValueError:
            return raw.decode(errors="replace")


def error_message(raw: bytes, status: int) -> str:
    """Docker errors are `{"message": ...}`; anything else is passed on as text."""
    try:
        obj = json.loads(raw)
        if isinstance(obj, dict) and "message" in obj:
            return str(obj["message"])
    except ValueError:
        pass
    text = raw.decode(errors="replace").strip()
    return text or f"engine answered HTTP {status}"


def raise_open_files_limit() -> int:
    """Raise the soft descriptor limit to the hard one: a manager holds an event stream
    and a pooled connection per engine, thousands at scale. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    log.debug("open files limit: %d", soft)
    return soft


def connection_error_text(address: EngineAddress, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    return f"Cannot connect to the Docker daemon at {address.entry}: {detail}"
