"""The replica handler: serves `/_ping` and `/info` itself and passes everything else,
byte for byte, to the primary manager.

Forwarding is a raw hijack (as classic Swarm does): the request head we already read is
written to a fresh TCP/TLS connection to the primary's advertise address, then bytes are
spliced both ways, so bodies stream and attach/exec upgrades pass through intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from typing import Any, Final, Protocol

from shoal.api.http import (
    Handler,
    Hijack,
    Request,
    Response,
    StreamResponse,
    json_response,
    splice,
)
from shoal.discovery.base import split_host_port

__all__ = ["DEBUG_PATH", "LOCAL_SUFFIXES", "PrimarySource", "ReplicaHandler", "WithDebug"]

LOCAL_SUFFIXES: Final = ("/_ping", "/info")
DEBUG_PATH: Final = "/debug/shoal/leadership"
CONNECT_TIMEOUT: Final = 10.0
MAX_WAIT: Final = 300.0
"""Longest a request waits for a primary to be elected (classic waits until the client leaves)."""
_POLL: Final = 0.25


class PrimarySource(Protocol):
    """Where the replica learns the primary's address (the election)."""

    @property
    def primary(self) -> str | None: ...

    async def wait_primary(self) -> str: ...

    def snapshot(self) -> dict[str, Any]: ...


def _raw_error(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: shoal\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class ReplicaHandler:
    """Forwards to the primary named by ``source``; ``local`` answers the local paths."""

    def __init__(
        self,
        local: Handler,
        source: PrimarySource,
        ssl_context: ssl.SSLContext | None = None,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.local = local
        self.source = source
        self.ssl_context = ssl_context
        self.max_wait = max_wait

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        path = request.path
        if path.endswith(LOCAL_SUFFIXES) or path == DEBUG_PATH:
            return await self.local(request)
        return Hijack(self._forward)

    async def _wait_primary(self, reader: asyncio.StreamReader) -> str | None:
        """The primary, or None if the client left (or MAX_WAIT passed) first."""
        primary = self.source.primary
        if primary is not None:
            return primary
        waiter = asyncio.ensure_future(self.source.wait_primary())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait
            while not waiter.done():
                if reader.at_eof() or loop.time() >= deadline:
                    return None
                await asyncio.wait({waiter}, timeout=_POLL)
            return waiter.result()
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    async def _forward(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        primary = await self._wait_primary(reader)
        if primary is None:
            if not reader.at_eof():
                writer.write(_raw_error(500, "Internal Server Error",
                                        "No elected primary cluster manager: context canceled"))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            return
        try:
            host, port = split_host_port(primary)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(
                    host,
                    int(port),
                    ssl=self.ssl_context,
                    server_hostname=host if self.ssl_context is not None else None,
                )
        except (OSError, ValueError, TimeoutError, ssl.SSLError) as exc:
            reason = str(exc) or type(exc).__name__
            writer.write(_raw_error(
                500, "Internal Server Error",
                f"Unable to reach primary cluster manager ({reason}): {primary}",
            ))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        up_writer.write(request.raw_head)
        await splice(reader, writer, up_reader, up_writer)


class WithDebug:
    """Adds the leadership debug route (role, primary, transitions) in front of a handler."""

    def __init__(self, inner: Handler, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.inner = inner
        self.snapshot = snapshot

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        if request.path == DEBUG_PATH and request.method == "GET":
            return json_response(self.snapshot())
        return await self.inner(request)

