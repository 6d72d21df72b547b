"""Pulls, loads and imports fanned out to several engines, with per-node progress.

An upload's body is copied to every engine as it arrives (never held whole); the engines'
JSON messages are merged as they come, each carrying its node as the message `id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shoal.api.http import Request, StreamResponse
from shoal.api.primary.fanout import Policy, fan_out
from shoal.api.primary.proxy import quietly
from shoal.cluster.client import error_message, json_objects
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineConnectionError, EngineError

#: What an engine says when an image is for another OS; such a failure is a skip.
OS_MISMATCH = ("image operating system", "cannot load", "cannot be used on this platform")
#: Request headers worth passing on to an engine for the fanned-out calls.
PASSED_HEADERS = ("X-Registry-Auth", "Content-Type")
#: Body pieces buffered per engine while the slowest engine catches up.
FANOUT_DEPTH = 8

Message = dict[str, Any]


def is_os_mismatch(text: str) -> bool:
    return any(marker in text for marker in OS_MISMATCH)


def passed_headers(request: Request) -> dict[str, str]:
    return {k: v for k in PASSED_HEADERS if (v := request.headers.get(k))}


async def engine_messages(
    engine: Engine,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    data: AsyncIterator[bytes] | bytes | None = None,
) -> AsyncIterator[Message]:
    """One engine's JSON-message stream of a POST; a failure ends it with an error message."""
    try:
        resp = await engine.stream("POST", path, params=params, headers=headers, data=data)
    except EngineConnectionError as exc:
        yield {"error": str(exc)}
        return
    async with resp:
        if resp.status >= 400:
            yield {"error": error_message(await resp.read(), resp.status)}
            return
        try:
            async for obj in json_objects(resp.content.iter_any()):
                yield obj
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # broke mid-stream
            yield {"error": engine.connection_lost(exc)}


class Fanout:
    """One request body copied to several engines as it arrives.

    Each engine reads its own bounded queue, so the body is never held whole; an
    engine that finished early (an error) is dropped and no longer slows the others.
    """

    _END = b""

    def __init__(self, source: AsyncIterator[bytes], count: int) -> None:
        self.source = source
        self.queues: list[asyncio.Queue[bytes | BaseException]] = [
            asyncio.Queue(FANOUT_DEPTH) for _ in range(count)
        ]
        self.alive = [True] * count
        self.error: BaseException | None = None

    async def pump(self) -> None:
        """Read the client's body to its end, feeding every engine still listening."""
        end: bytes | BaseException = self._END
        try:
            async for piece in self.source:
                if not piece:
                    continue
                for i, queue in enumerate(self.queues):
                    if self.alive[i]:
                        await queue.put(piece)
        except Exception as exc:  # the client went away: every upload must fail
            self.error = exc
            end = exc
        for i, queue in enumerate(self.queues):
            if self.alive[i]:
                await queue.put(end)

    async def reader(self, index: int) -> AsyncIterator[bytes]:
        queue = self.queues[index]
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise ConnectionError(f"client upload failed: {item}")
            if item == self._END:
                return
            yield item

    def done(self, index: int) -> None:
        """The engine answered: stop feeding it and free a producer blocked on its queue."""
        self.alive[index] = False
        queue = self.queues[index]
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()


async def fan_in(
    targets: Sequence[Engine],
    source: Callable[[int, Engine], AsyncIterator[Message]],
) -> AsyncIterator[tuple[Engine, Message | None]]:
    """Every engine's messages as they come; `(engine, None)` marks an engine's end."""
    queue: asyncio.Queue[tuple[Engine, Message | None]] = asyncio.Queue()

    async def run(index: int, engine: Engine) -> None:
        try:
            async for message in source(index, engine):
                await queue.put((engine, message))
        except Exception as exc:  # a bug in one engine's stream must not hang the rest
            await queue.put((engine, {"error": str(exc)}))
        finally:
            await queue.put((engine, None))

    tasks = [asyncio.create_task(run(i, e)) for i, e in enumerate(targets)]
    try:
        remaining = len(targets)
        while remaining:
            item = await queue.get()
            if item[1] is None:
                remaining -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def upload_to_each(
    targets: Sequence[Engine], request: Request, path: str, params: dict[str, str]
) -> None:
    """The request's body sent to every target as it arrives, each answer read whole; the
    failures joined as `fan_out` joins them (every target must succeed)."""
    fanout = Fanout(request.stream(), len(targets))
    headers = passed_headers(request)
    positions = {id(engine): index for index, engine in enumerate(targets)}

    async def send(engine: Engine) -> None:
        index = positions[id(engine)]
        try:
            resp = await engine.stream(
                "POST", path, params=params, headers=headers, data=fanout.reader(index)
            )
            async with resp:
                raw = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # broke mid-answer
            raise EngineConnectionError(engine.connection_lost(exc)) from exc
        finally:
            fanout.done(index)
        if resp.status >= 400:
            raise EngineError(resp.status, error_message(raw, resp.status))

    pump = asyncio.create_task(fanout.pump())
    try:
        await fan_out(targets, send, Policy.ALL)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


def final_error(errors: list[str], successes: int) -> bytes:
    """The closing error object of a fanned-out stream, unless only OS mismatches failed."""
    if not errors or (successes and all(is_os_mismatch(e) for e in errors)):
        return b""
    text = "\n".join(errors)
    return line({"error": text, "errorDetail": {"code": 1, "message": text}})


def progress(message: Message, status: str, engine: Engine) -> Message:
    out: Message = {"status": status, "id": engine.name}
    for key in ("progressDetail", "progress"):
        if key in message:
            out[key] = message[key]
    return out


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


@dataclass
class Tally:
    """How the engines of one fanned-out stream fared, for its closing error."""

    errors: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    successes: int = 0
    #: Read a succeeding engine's images again (not after a plugin install).
    refresh_images: bool = True

    def fail(self, engine: Engine, text: str) -> None:
        self.failed.add(engine.name)
        self.errors.append(f"{engine.name}: {text}")

    async def end(self, engine: Engine) -> bool:
        """An engine's stream ended: True (and its image cache refreshed) if it succeeded."""
        if engine.name in self.failed:
            return False
        self.successes += 1
        if self.refresh_images:
            await quietly(engine.refresh_images)
        return True

    def final(self) -> bytes:
        return final_error(self.errors, self.successes)


async def pull_stream(
    targets: Sequence[Engine], ref: str, repo: str, tag: str, auth: str | None
) -> AsyncIterator[bytes]:
    """Every target's pull progress, as classic Swarm shows it (`Pulling ref... : status`)."""
    tally = Tally()
    headers = {"X-Registry-Auth": auth} if auth else {}
    query = {"fromImage": repo, "tag": tag}
    for engine in targets:
        yield line({"status": f"Pulling {ref}...", "id": engine.name})
    source = fan_in(
        targets, lambda i, e: engine_messages(e, "/images/create", params=query, headers=headers)
    )
    async for engine, message in source:
        if message is None:
            if await tally.end(engine):
                yield line({"status": f"Pulling {ref}... : downloaded", "id": engine.name})
        elif "error" in message:
            text = str(message["error"])
            tally.fail(engine, text)
            yield line({"status": f"Failed to pull {ref}: {text}", "id": engine.name})
        else:
            status = message.get("status", "")
            shown = f"Pulling {ref}... : {status}" if status else f"Pulling {ref}..."
            yield line(progress(message, shown, engine))
    yield tally.final()


@dataclass
class Upload:
    """One upload (`docker load`, `docker import`) streamed to every target."""

    targets: Sequence[Engine]
    path: str
    #: None when `path` carries the query itself (repeated parameters).
    query: dict[str, str] | None
    verb: str
    failure: str
    dedupe_streams: bool = False
    #: Answer as one engine would: the first target's own messages, unchanged (an import's
    #: `{"status": "<image ID>"}`, which clients read as the ID). Each node imports its own
    #: image (the IDs differ by creation time); the first target's is the one lookups find.
    one_engines_answer: bool = False
    refresh_images: bool = True

    def response(self, request: Request) -> StreamResponse:
        fanout = Fanout(request.stream(), len(self.targets))
        return StreamResponse(200, self._stream(fanout, passed_headers(request)))

    async def _messages(
        self, fanout: Fanout, headers: dict[str, str], index: int, engine: Engine
    ) -> AsyncIterator[Message]:
        try:
            async for message in engine_messages(
                engine, self.path, params=self.query, headers=headers, data=fanout.reader(index)
            ):
                yield message
        finally:
            fanout.done(index)

    async def _stream(self, fanout: Fanout, headers: dict[str, str]) -> AsyncIterator[bytes]:
        pump = asyncio.create_task(fanout.pump())
        tally = Tally(refresh_images=self.refresh_images)
        seen: set[str] = set()
        answers: dict[str, list[Message]] = {}
        try:
            async for engine, message in fan_in(
                self.targets, lambda i, e: self._messages(fanout, headers, i, e)
            ):
                if message is None:
                    await tally.end(engine)
                    continue
                if self.one_engines_answer and "error" not in message:
                    answers.setdefault(engine.name, []).append(message)
                    continue
                out = self._line_for(engine, message, fanout, tally, seen)
                if out and not self.one_engines_answer:
                    yield out
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        if self.one_engines_answer:
            first = next((e for e in self.targets if e.name not in tally.failed), None)
            for message in answers.get(first.name, []) if first is not None else []:
                yield line(message)
        yield tally.final()

    def _line_for(
        self, engine: Engine, message: Message, fanout: Fanout, tally: Tally, seen: set[str]
    ) -> bytes:
        if "error" in message:
            text = str(message["error"])
            if fanout.error is not None:
                text = f"{text} ({fanout.error})"
            tally.fail(engine, text)
            if is_os_mismatch(text):
                return line({"status": f"{self.verb} skipped: {text}", "id": engine.name})
            return line({"status": f"{self.failure}: {text}", "id": engine.name})
        if "stream" in message and self.dedupe_streams:
            # `Loaded image: x` once, as one engine says it (docker-py parses it).
            text = str(message["stream"])
            if text in seen:
                return b""
            seen.add(text)
            return line({"stream": text})
        text = str(message.get("status") or message.get("stream") or "").strip()
        status = f"{self.verb}... : {text}" if text else f"{self.verb}..."
        return line(progress(message, status, engine))
