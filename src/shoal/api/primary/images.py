"""Image routes: one merged list, pulls, loads and imports fanned out with per-node progress,
and the single-image calls sent to an engine that holds the image."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.proxy import forward, quietly, rewrite_target
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.cluster.client import (
    HOP_BY_HOP,
    EngineError,
    connection_error_text,
    error_message,
    json_objects,
)
from shoal.cluster.cluster import Cluster, split_image
from shoal.cluster.engine import Engine
from shoal.cluster.records import Image, normalize_ref

#: What an engine says when an image is for another OS; such a failure is a skip.
OS_MISMATCH = ("image operating system", "cannot load", "cannot be used on this platform")
#: Request headers worth passing on to an engine for the fanned-out calls.
PASSED_HEADERS = ("X-Registry-Auth", "Content-Type")
IMAGE_FILTERS = frozenset({"dangling", "label", "reference", "before", "since", "node"})
#: Body pieces buffered per engine while the slowest engine catches up.
FANOUT_DEPTH = 8

Message = dict[str, Any]


def merged_images(
    cluster: Cluster, show_all: bool, filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Images grouped by ID across nodes, tags and digests joined (spec 3.8)."""
    for key in filters:
        if key not in IMAGE_FILTERS:
            raise HTTPError(400, f"invalid filter '{key}'")
    engines = cluster.active_engines()
    if "node" in filters:
        wanted = set(filters["node"])
        engines = [e for e in engines if e.name in wanted or e.id in wanted]
    created_bounds = {
        key: created_of(cluster, key, filters[key][0])
        for key in ("before", "since")
        if filters.get(key)
    }
    merged: dict[str, dict[str, Any]] = {}
    for engine in engines:
        for image in engine.images:
            if not show_all and not image.repo_tags and not image.repo_digests:
                continue
            if not image_matches_filters(image, filters):
                continue
            created = int(image.summary.get("Created") or 0)
            if "before" in created_bounds and not created < created_bounds["before"]:
                continue
            if "since" in created_bounds and not created > created_bounds["since"]:
                continue
            entry = merged.get(image.id)
            if entry is None:
                entry = dict(image.summary)
                entry["RepoTags"] = list(image.repo_tags)
                entry["RepoDigests"] = list(image.repo_digests)
                merged[image.id] = entry
                continue
            for key, values in (("RepoTags", image.repo_tags), ("RepoDigests", image.repo_digests)):
                for value in values:
                    if value not in entry[key]:
                        entry[key].append(value)
            entry["Containers"] = _add_counts(
                entry.get("Containers"), image.summary.get("Containers")
            )
    out = sorted(merged.values(), key=lambda i: i.get("Created", 0), reverse=True)
    for entry in out:
        if not entry["RepoTags"]:
            entry["RepoTags"] = None if not show_all else ["<none>:<none>"]
        if not entry["RepoDigests"]:
            entry["RepoDigests"] = None if not show_all else ["<none>@<none>"]
    return out


def _add_counts(a: Any, b: Any) -> Any:
    """Engines report -1 for "not computed"; a sum only where both counted."""
    if isinstance(a, int) and isinstance(b, int) and a >= 0 and b >= 0:
        return a + b
    return a


def created_of(cluster: Cluster, key: str, ref: str) -> int:
    """The `Created` of the image a `before`/`since` filter names (spec 3.8 texts)."""
    for engine in cluster.active_engines():
        for image in engine.images:
            if image.matches(ref):
                return int(image.summary.get("Created") or 0)
    raise HTTPError(400, f"Invalid filter: 'type'='{key}': no such image found: '{ref}'")


def image_matches_filters(image: Image, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            if values[0] not in ("true", "false", "1", "0"):
                raise HTTPError(400, "Invalid filter: 'type'='dangling'")
            dangling = not image.repo_tags
            if dangling != (values[0] in ("true", "1")):
                return False
        elif key == "label":
            labels = image.summary.get("Labels") or {}
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        elif key == "reference":
            names = image.repo_tags + [t.rsplit(":", 1)[0] for t in image.repo_tags]
            names += image.repo_digests
            if not any(fnmatch.fnmatchcase(n, v) for n in names for v in values):
                return False
    return True


def find_image_engine(cluster: Cluster, ref: str) -> Engine:
    for engine in cluster.healthy_engines():
        if engine.image_index.find(ref) is not None:
            return engine
    raise HTTPError(404, f"No such image: {ref}")


def split_node_prefix(cluster: Cluster, ref: str) -> tuple[Engine | None, str]:
    """`node-1/busybox` pulls on node-1 only, when `node-1` names a node.

    Today's CLI sends the normalized name (`docker.io/node-1/busybox`), so the default
    registry's host is looked through.
    """
    candidates = [ref]
    if ref.startswith("docker.io/"):
        candidates.append(ref.removeprefix("docker.io/"))
    for text in candidates:
        head, sep, rest = text.partition("/")
        if sep and rest:
            engine = cluster.engine_by_name(head)
            if engine is not None:
                return engine, rest
    return None, ref


def familiar_name(repo: str) -> str:
    """`docker.io/library/busybox` as users write it (today's CLI sends the full name)."""
    if repo.startswith("docker.io/library/") and repo.count("/") == 2:
        return repo.removeprefix("docker.io/library/")
    if repo.startswith("docker.io/") and repo.count("/") == 2:
        return repo.removeprefix("docker.io/")
    return repo


def is_os_mismatch(text: str) -> bool:
    return any(marker in text for marker in OS_MISMATCH)


async def engine_messages(
    engine: Engine,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    data: AsyncIterator[bytes] | bytes | None = None,
) -> AsyncIterator[Message]:
    """One engine's JSON-message stream; a failure ends it with an `{"error": ...}` message."""
    client = engine.client
    url = client.base_url + client.api_prefix + path
    try:
        async with client.session.request(
            method,
            url,
            params=params,
            headers=headers or {},
            data=data,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=None),
        ) as resp:
            engine.record_success()
            if resp.status >= 400:
                yield {"error": error_message(await resp.read(), resp.status)}
                return
            async for obj in json_objects(resp.content.iter_any()):
                yield obj
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        text = connection_error_text(engine.address, exc)
        engine.record_failure(text)
        yield {"error": text}


async def pull_messages(
    engine: Engine, repo: str, tag: str, auth: str | None
) -> AsyncIterator[Message]:
    """One engine's pull progress as JSON messages; a failure ends with an error message."""
    headers = {"X-Registry-Auth": auth} if auth else {}
    async for message in engine_messages(
        engine, "POST", "/images/create", params={"fromImage": repo, "tag": tag}, headers=headers
    ):
        yield message


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


def final_error(errors: list[str], successes: int) -> bytes:
    """The closing error object of a fanned-out stream, unless only OS mismatches failed."""
    if not errors or (successes and all(is_os_mismatch(e) for e in errors)):
        return b""
    text = "\n".join(errors)
    return _line({"error": text, "errorDetail": {"code": 1, "message": text}})


def _progress(message: Message, status: str, engine: Engine) -> Message:
    out: Message = {"status": status, "id": engine.name}
    for key in ("progressDetail", "progress"):
        if key in message:
            out[key] = message[key]
    return out


def passed_headers(request: Request) -> dict[str, str]:
    return {k: v for k in PASSED_HEADERS if (v := request.headers.get(k))}


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_images(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        legacy = request.arg("filter")
        if legacy:
            filters.setdefault("reference", []).append(legacy)
        return json_response(merged_images(cluster, request.flag("all"), filters))

    async def create(request: Request, params: dict[str, str]) -> StreamResponse:
        from_src = request.arg("fromSrc")
        if from_src is not None:
            return await import_image(request, from_src)
        from_image = request.arg("fromImage")
        if not from_image:
            raise HTTPError(400, "fromImage or fromSrc is required")
        return pull(request, from_image)

    def pull(request: Request, from_image: str) -> StreamResponse:
        tag = request.arg("tag") or ""
        node, image = split_node_prefix(cluster, from_image)
        repo, parsed_tag = split_image(image)
        if not tag:
            tag = parsed_tag
        shown = familiar_name(repo)
        ref = f"{shown}@{tag}" if ":" in tag else f"{shown}:{tag}"
        targets = [node] if node is not None else cluster.active_engines()
        if not targets:
            raise HTTPError(500, "No healthy node available in the cluster")
        auth = request.headers.get("X-Registry-Auth")

        async def stream() -> AsyncIterator[bytes]:
            errors: list[str] = []
            failed: set[str] = set()
            successes = 0
            for engine in targets:
                yield _line({"status": f"Pulling {ref}...", "id": engine.name})
            source = fan_in(targets, lambda i, e: pull_messages(e, repo, tag, auth))
            async for engine, message in source:
                if message is None:
                    if engine.name not in failed:
                        successes += 1
                        await quietly(engine.refresh_images)
                        yield _line({"status": f"Pulling {ref}... : downloaded", "id": engine.name})
                    continue
                if "error" in message:
                    text = str(message["error"])
                    failed.add(engine.name)
                    errors.append(f"{engine.name}: {text}")
                    yield _line({"status": f"Failed to pull {ref}: {text}", "id": engine.name})
                    continue
                status = message.get("status", "")
                yield _line(
                    _progress(
                        message,
                        f"Pulling {ref}... : {status}" if status else f"Pulling {ref}...",
                        engine,
                    )
                )
            yield final_error(errors, successes)

        return StreamResponse(200, stream())

    async def import_image(request: Request, from_src: str) -> StreamResponse:
        """`docker import`: the tar goes to every healthy node as it arrives."""
        if from_src != "-":
            raise HTTPError(501, "import from a URL is not supported by shoal; send the tar body")
        targets = cluster.healthy_engines()
        if not targets:
            raise HTTPError(500, "No healthy node available in the cluster")
        query = {k: v[0] for k, v in request.query.items() if v}
        repo = query.get("repo", "")
        ref = f"{repo}:{query['tag']}" if repo and query.get("tag") else repo or "image"
        return fanned_upload(
            request,
            targets,
            "/images/create",
            query,
            verb="Importing",
            failure=f"Failed to import {ref}",
        )

    def fanned_upload(
        request: Request,
        targets: list[Engine],
        path: str,
        query: dict[str, str],
        *,
        verb: str,
        failure: str,
        dedupe_streams: bool = False,
    ) -> StreamResponse:
        """Stream one upload to every target; messages carry the node as their `id`."""
        headers = passed_headers(request)
        fanout = Fanout(request.stream(), len(targets))

        async def upload(index: int, engine: Engine) -> AsyncIterator[Message]:
            try:
                async for message in engine_messages(
                    engine, "POST", path, params=query, headers=headers, data=fanout.reader(index)
                ):
                    yield message
            finally:
                fanout.done(index)

        async def stream() -> AsyncIterator[bytes]:
            pump = asyncio.create_task(fanout.pump())
            errors: list[str] = []
            failed: set[str] = set()
            streams_seen: set[str] = set()
            successes = 0
            try:
                async for engine, message in fan_in(targets, upload):
                    if message is None:
                        if engine.name not in failed:
                            successes += 1
                            await quietly(engine.refresh_images)
                        continue
                    if "error" in message:
                        text = str(message["error"])
                        if fanout.error is not None:
                            text = f"{text} ({fanout.error})"
                        failed.add(engine.name)
                        if is_os_mismatch(text):
                            yield _line({"status": f"{verb} skipped: {text}", "id": engine.name})
                        else:
                            yield _line({"status": f"{failure}: {text}", "id": engine.name})
                        errors.append(f"{engine.name}: {text}")
                        continue
                    if "stream" in message and dedupe_streams:
                        # `Loaded image: x` once, as one engine says it (docker-py parses it).
                        text = str(message["stream"])
                        if text not in streams_seen:
                            streams_seen.add(text)
                            yield _line({"stream": text})
                        continue
                    text = str(message.get("status") or message.get("stream") or "").strip()
                    status = f"{verb}... : {text}" if text else f"{verb}..."
                    yield _line(_progress(message, status, engine))
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            yield final_error(errors, successes)

        return StreamResponse(200, stream())

    async def load(request: Request, params: dict[str, str]) -> StreamResponse:
        """`docker load`: the tar goes to every healthy node (spec 3.8)."""
        targets = cluster.healthy_engines()
        if not targets:
            raise HTTPError(500, "No healthy node available in the cluster")
        query = {k: v[0] for k, v in request.query.items() if v}
        return fanned_upload(
            request,
            targets,
            "/images/load",
            query,
            verb="Loading Image",
            failure="Failed to load image",
            dedupe_streams=True,
        )

    async def on_holder(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        engine = find_image_engine(cluster, params["name"])
        return await forward(engine, request, rewrite_target(request, request.path))

    async def push(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        """Pushed from an engine holding `name:tag` (the tag travels as a query parameter)."""
        name = params["name"]
        tag = request.arg("tag")
        ref = f"{name}:{tag}" if tag and "@" not in name else name
        for engine in cluster.healthy_engines():
            if engine.image_index.find(ref) is not None:
                return await forward(engine, request, rewrite_target(request, request.path))
        raise HTTPError(404, f"No such image: {ref}")

    async def tag(request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        holders = [
            e for e in cluster.healthy_engines() if e.image_index.find(name) is not None
        ]
        if not holders:
            raise HTTPError(404, f"No such image: {name}")
        query = {k: v[0] for k, v in request.query.items() if v}
        errors = await on_each(
            holders, lambda e: e.call("POST", f"/images/{name}/tag", params=query)
        )
        await on_each(holders, lambda e: quietly(e.refresh_images))
        if errors:
            raise HTTPError(status_of(errors), "\n".join(m for _, m in errors))
        return Response(201, b"", [], None)

    async def remove(request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        holders = [
            e for e in cluster.active_engines() if e.image_index.find(name) is not None
        ]
        if not holders:
            raise HTTPError(404, f"No such image: {name}")
        query = {k: v[0] for k, v in request.query.items() if v}
        results: list[Any] = []

        async def delete(engine: Engine) -> None:
            # The same untag/delete on several nodes reads once, as from one engine.
            items = await engine.call("DELETE", f"/images/{name}", params=query)
            results.extend(i for i in items or [] if i not in results)

        errors = await on_each(holders, delete)
        await on_each(holders, lambda e: quietly(e.refresh_images))
        if errors and not results:
            raise HTTPError(status_of(errors), "\n".join(m for _, m in errors))
        if errors:
            raise HTTPError(500, "\n".join(m for _, m in errors))
        return json_response(results)

    async def prune(request: Request, params: dict[str, str]) -> Response:
        """`docker image prune` on every healthy node: deletions joined, space summed."""
        query = {k: v[0] for k, v in request.query.items() if v}
        engines = cluster.healthy_engines()
        results = await gather_calls(
            engines, lambda e: e.call("POST", "/images/prune", params=query, timeout=None)
        )
        await on_each(engines, lambda e: quietly(e.refresh_images))
        return json_response(merge_prune(results, "ImagesDeleted"))

    async def system_df(request: Request, params: dict[str, str]) -> Response:
        """`docker system df` over the cluster (classic Swarm had none)."""
        query = {k: v[0] for k, v in request.query.items() if v}
        engines = cluster.healthy_engines()
        results = await gather_calls(
            engines, lambda e: e.call("GET", "/system/df", params=query or None, timeout=None)
        )
        return json_response(merge_df(results))

    async def on_any(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        engines = cluster.healthy_engines()
        if not engines:
            raise HTTPError(500, "No healthy node available in the cluster")
        return await forward(
            random.choice(engines), request, rewrite_target(request, request.path)
        )

    async def save(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        names = request.query.get("names") or []
        for engine in cluster.healthy_engines():
            if all(engine.image_index.find(n) is not None for n in names):
                return await forward(engine, request, rewrite_target(request, request.path))
        listed = " ".join(names)
        raise HTTPError(404, f"Unable to find a healthy engine containing all images: [{listed}]")

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/system/df", system_df)
    router.add("GET", "/images/get", save)
    router.add("GET", "/images/search", on_any)
    router.add("GET", "/images/{name:.*}/json", on_holder)
    router.add("GET", "/images/{name:.*}/history", on_holder)
    router.add("GET", "/images/{name:.*}/get", on_holder)
    router.add("POST", "/images/{name:.*}/push", push)
    router.add("POST", "/images/{name:.*}/tag", tag)
    router.add("DELETE", "/images/{name:.*}", remove)
    router.add("POST", "/auth", on_any)


async def gather_calls(
    engines: Sequence[Engine], call: Callable[[Engine], Awaitable[Any]]
) -> list[tuple[Engine, Any]]:
    """One call per engine at once; the answers of those that answered (errors: HTTPError)."""
    if not engines:
        raise HTTPError(500, "No healthy node available in the cluster")
    answered, errors = await _call_each(engines, call)
    if errors:
        raise HTTPError(status_of(errors), "\n".join(m for _, m in errors))
    return answered


def merge_prune(results: Sequence[tuple[Engine, Any]], key: str) -> dict[str, Any]:
    """Prune answers of several engines as one: the deleted lists joined, space summed."""
    deleted: list[Any] = []
    space = 0
    for _, result in results:
        deleted.extend((result or {}).get(key) or [])
        space += int((result or {}).get("SpaceReclaimed") or 0)
    return {key: deleted or None, "SpaceReclaimed": space}


def merge_df(results: Sequence[tuple[Engine, Any]]) -> dict[str, Any]:
    """`/system/df` of several engines: images merged by ID, containers and local volumes
    named with their node as `docker ps` and `docker volume ls` show them."""
    layers = 0
    images: dict[str, dict[str, Any]] = {}
    containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    build_cache: list[Any] = []
    for engine, result in results:
        data = result or {}
        layers += int(data.get("LayersSize") or 0)
        for image in data.get("Images") or []:
            entry = images.get(image.get("Id", ""))
            if entry is None:
                images[image.get("Id", "")] = dict(image)
                continue
            for key in ("RepoTags", "RepoDigests"):
                values = entry.get(key) or []
                entry[key] = values + [v for v in image.get(key) or [] if v not in values]
            entry["Containers"] = _add_counts(entry.get("Containers"), image.get("Containers"))
        for container in data.get("Containers") or []:
            item = dict(container)
            item["Names"] = [f"/{engine.name}{n}" for n in item.get("Names") or []]
            containers.append(item)
        for volume in data.get("Volumes") or []:
            item = dict(volume)
            if item.get("Driver", "local") == "local":
                item["Name"] = f"{engine.name}/{item.get('Name', '')}"
            volumes.append(item)
        build_cache.extend(data.get("BuildCache") or [])
    return {
        "LayersSize": layers,
        "Images": sorted(images.values(), key=lambda i: i.get("Created", 0), reverse=True),
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": build_cache,
    }


async def on_each(engines: list[Engine], action: Any) -> list[tuple[int, str]]:
    """Run one call per engine at once; failures come back as (status, "node: message")."""
    _, errors = await _call_each(engines, action)
    return errors


async def _call_each(
    engines: Sequence[Engine], call: Callable[[Engine], Awaitable[Any]]
) -> tuple[list[tuple[Engine, Any]], list[tuple[int, str]]]:
    """One call per engine at once: (engine, answer) pairs and (status, "node: message")."""
    results = await asyncio.gather(*(call(e) for e in engines), return_exceptions=True)
    answered: list[tuple[Engine, Any]] = []
    errors: list[tuple[int, str]] = []
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, EngineError):
            errors.append((result.status, f"{engine.name}: {result.message}"))
        elif isinstance(result, BaseException):
            errors.append((500, f"{engine.name}: {result}"))
        else:
            answered.append((engine, result))
    return answered, errors


def status_of(errors: list[tuple[int, str]]) -> int:
    statuses = {s for s, _ in errors}
    return statuses.pop() if len(statuses) == 1 else 500


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


__all__ = ["HOP_BY_HOP", "merged_images", "normalize_ref", "register"]
