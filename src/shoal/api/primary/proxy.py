"""Passing a client's request through to the engine that owns the object.

Bodies stream both ways: a `docker logs -f` or `docker stats` response is forwarded
chunk by chunk, an upload (`docker cp`, `docker load`) is sent on as it arrives.
Hijacked calls get a connection of their own, spliced byte for byte with the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import aiohttp

from shoal.api.http import (
    Hijack,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    splice,
)
from shoal.cluster.client import HOP_BY_HOP
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineConnectionError, EngineFailure
from shoal.cluster.index import Placed
from shoal.cluster.passthrough import RawResponse

#: Seconds between an engine's `101 UPGRADED` head and its stream, passed on, for a
#: one-shot attach (`one_shot_attach`): docker-py
#: reads the head through a buffered file and then the raw socket, so stream bytes that
#: reach it with the head are lost (`attach(logs=True, stream=False)` of a finished
#: container answers nothing about half the time, against an engine too).
UPGRADE_PAUSE = 0.05
#: Response headers an engine sets that describe the engine, not the object.
ENGINE_ONLY_HEADERS = frozenset({"api-version", "docker-experimental", "ostype", "server", "date"})


def find_healthy(cluster: Cluster, ref: str) -> Placed:
    """A container whose engine can be talked to, as classic Swarm's proxy(c) requires."""
    placed = cluster.find_container(ref)
    if not placed.engine.healthy:
        raise HTTPError(
            500, f"Container {ref} running on unhealthy node {placed.engine.name}"
        )
    return placed


def rewrite_target(request: Request, path: str) -> str:
    """The client's target with a new path: version prefix and raw query kept."""
    prefix = f"/v{request.api_version}" if request.api_version else ""
    _, sep, query = request.target.partition("?")
    return prefix + quote(path, safe="/:@!$&'()*+,;=-._~") + (sep + query if sep else "")


def container_path(request: Request, ref: str, full_id: str) -> str:
    """The route's path with the ID in place of the name the client used, so the engine
    never re-resolves it. Built from the route's parts (`/containers/` + `{name}` + the
    rest): a name may also occur inside `/containers/` itself (`co`, `tainer`)."""
    head = "/containers/"
    if not request.path.startswith(head + ref):
        raise HTTPError(404, f"No such container: {ref}")
    return head + full_id + request.path[len(head) + len(ref) :]


async def forward(
    engine: Engine,
    request: Request,
    target: str,
    *,
    after: Callable[[], Awaitable[object]] | None = None,
    body: bytes | AsyncIterator[bytes] | None = None,
) -> Response | StreamResponse:
    """Send the request on; small answers come back whole, streams chunk by chunk.

    `after` runs once the engine has answered a complete body (a cache refresh, so the
    next read through shoal sees the change), or when a streamed answer ends. Requests
    without a body, or with a small one of known length, take the raw passthrough path;
    uploads are streamed through aiohttp's client, as is a `body` given by the caller
    (bytes, or an iterator of them).
    """
    length = request.headers.get("Content-Length")
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if body is None and not chunked and (length is None or int(length) <= RAW_BODY_LIMIT):
        raw_body = await request.body() if length else b""
        return await _forward_raw(engine, request, target, raw_body, after)
    headers = [
        (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
    ]
    data: bytes | AsyncIterator[bytes] | None = body
    if body is None and not request.body_complete:
        data = request.stream()
    resp = await engine.forward(request.method, target, headers=headers, data=data)
    out_headers = [
        (k, v)
        for k, v in resp.headers.items()
        if k.lower() not in HOP_BY_HOP
        and k.lower() not in ENGINE_ONLY_HEADERS
        and k.lower() != "content-type"
    ]
    content_type = resp.headers.get("Content-Type")
    if resp.content_length is not None or resp.status in (204, 304) or request.method == "HEAD":
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineConnectionError(str(exc)) from exc
        finally:
            resp.release()
        if after is not None:
            await quietly(after)
        return Response(resp.status, raw, out_headers, content_type)
    return StreamResponse(resp.status, _relay(resp, after), out_headers, content_type)


RAW_BODY_LIMIT = 1 << 20


async def _forward_raw(
    engine: Engine,
    request: Request,
    target: str,
    body: bytes,
    after: Callable[[], Awaitable[object]] | None,
) -> Response | StreamResponse:
    resp = await engine.forward_raw(
        rewrite_head(request.raw_head, target), body, head_only=request.method == "HEAD"
    )
    content_type = None
    headers: list[tuple[str, str]] = []
    for name, value in resp.headers:
        lower = name.lower()
        if lower == "content-type":
            content_type = value
        elif lower not in HOP_BY_HOP and lower not in ENGINE_ONLY_HEADERS:
            headers.append((name, value))
    if resp.content_length is not None:
        try:
            raw = await resp.read()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            raise EngineConnectionError(f"engine connection lost: {exc}") from exc
        if after is not None:
            await quietly(after)
        return Response(resp.status, raw, headers, content_type)
    return StreamResponse(resp.status, _relay_raw(resp, after), headers, content_type)


async def _relay_raw(
    resp: RawResponse, after: Callable[[], Awaitable[object]] | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.body():
            yield chunk
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        return
    finally:
        resp.close()
        if after is not None:
            await quietly(after)


async def _relay(
    resp: aiohttp.ClientResponse, after: Callable[[], Awaitable[object]] | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, OSError):
        return
    finally:
        resp.close()
        if after is not None:
            await quietly(after)


async def quietly(call: Callable[[], Awaitable[object]]) -> None:
    """A best-effort cache refresh: the answer to the client does not depend on it."""
    with contextlib.suppress(EngineFailure, OSError):
        await call()


def rewrite_head(raw_head: bytes, target: str) -> bytes:
    """The client's request head, byte for byte, with a new request target."""
    line_end = raw_head.index(b"\r\n")
    method, _, rest = raw_head[:line_end].partition(b" ")
    _, _, version = rest.rpartition(b" ")
    return method + b" " + target.encode() + b" " + version + raw_head[line_end:]


def one_shot_attach(request: Request) -> bool:
    """An attach that only reads what is there (`stream` off): its whole answer follows the
    head at once, which is when docker-py loses it. Interactive attaches and execs get
    no pause."""
    path = request.path.rstrip("/")
    return path.endswith("/attach") and not request.flag("stream")


def hijack(engine: Engine, target: str) -> Hijack:
    """Splice the client with a fresh engine connection that carries its request."""

    async def run(
        request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            engine_reader, engine_writer = await engine.hijack()
        except EngineConnectionError as exc:
            body = f'{{"message":"{exc}"}}\n'.encode()
            writer.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        engine_writer.write(rewrite_head(request.raw_head, target))
        pause = UPGRADE_PAUSE if one_shot_attach(request) else 0.0
        await splice(reader, writer, engine_reader, engine_writer, upgrade_pause=pause)

    return Hijack(run)
