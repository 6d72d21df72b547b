"""Image routes: one merged list, pulls fanned out with per-node progress, and the
single-image calls sent to an engine that holds the image."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.proxy import forward, rewrite_target
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.cluster.client import HOP_BY_HOP, EngineConnectionError, EngineError
from shoal.cluster.cluster import Cluster, split_image
from shoal.cluster.engine import Engine
from shoal.cluster.records import Image, normalize_ref


def merged_images(
    cluster: Cluster, show_all: bool, filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Images grouped by ID across nodes, tags and digests joined (spec 3.8)."""
    merged: dict[str, dict[str, Any]] = {}
    engines = cluster.active_engines()
    if "node" in filters:
        wanted = set(filters["node"])
        engines = [e for e in engines if e.name in wanted or e.id in wanted]
    for engine in engines:
        for image in engine.images:
            if not show_all and not image.repo_tags and not image.repo_digests:
                continue
            if not image_matches_filters(image, filters):
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
    out = sorted(merged.values(), key=lambda i: i.get("Created", 0), reverse=True)
    for entry in out:
        if not entry["RepoTags"]:
            entry["RepoTags"] = None if not show_all else ["<none>:<none>"]
        if not entry["RepoDigests"]:
            entry["RepoDigests"] = None if not show_all else ["<none>@<none>"]
    return out


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
            if not any(fnmatch.fnmatchcase(n, v) for n in names for v in values):
                return False
    return True


def find_image_engine(cluster: Cluster, ref: str) -> Engine:
    for engine in cluster.healthy_engines():
        if any(image.matches(ref) for image in engine.images):
            return engine
    raise HTTPError(404, f"No such image: {ref}")


def split_node_prefix(cluster: Cluster, ref: str) -> tuple[Engine | None, str]:
    """`node-1/busybox` pulls on node-1 only, when `node-1` names a node."""
    bare = ref
    for registry in ("docker.io/", "index.docker.io/"):
        bare = bare.removeprefix(registry)  # the v28 CLI sends fully qualified names
    head, sep, rest = bare.partition("/")
    if sep:
        engine = cluster.engine_by_name(head)
        if engine is not None:
            return engine, rest
    return None, ref


async def pull_messages(
    engine: Engine, repo: str, tag: str, auth: str | None
) -> AsyncIterator[dict[str, Any]]:
    """One engine's pull progress as JSON messages; a failure ends with an error message."""
    client = engine.client
    headers = {"X-Registry-Auth": auth} if auth else {}
    url = client.base_url + client.api_prefix + "/images/create"
    try:
        async with client.session.post(
            url,
            params={"fromImage": repo, "tag": tag},
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0),
        ) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    message = json.loads(raw).get("message", raw.decode())
                except ValueError:
                    message = raw.decode(errors="replace")
                yield {"error": message}
                return
            decoder = json.JSONDecoder()
            buffer = ""
            async for chunk in resp.content.iter_any():
                buffer += chunk.decode(errors="replace")
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        obj, end = decoder.raw_decode(buffer)
                    except ValueError:
                        break
                    buffer = buffer[end:]
                    yield obj
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        engine.record_failure(str(exc))
        yield {"error": str(exc)}


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_images(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        legacy = request.arg("filter")
        if legacy:
            filters.setdefault("reference", []).append(legacy)
        return json_response(merged_images(cluster, request.flag("all"), filters))

    async def create(request: Request, params: dict[str, str]) -> StreamResponse:
        from_image = request.arg("fromImage")
        if not from_image:
            raise HTTPError(501, "image import (fromSrc) is not supported by shoal yet")
        tag = request.arg("tag") or ""
        node, image = split_node_prefix(cluster, from_image)
        repo, parsed_tag = split_image(image)
        if not tag:
            tag = parsed_tag
        ref = f"{repo}@{tag}" if ":" in tag else f"{repo}:{tag}"
        targets = [node] if node is not None else cluster.active_engines()
        if not targets:
            raise HTTPError(500, "No healthy node available in the cluster")
        auth = request.headers.get("X-Registry-Auth")
        queue: asyncio.Queue[tuple[Engine, dict[str, Any] | None]] = asyncio.Queue()

        async def pull(engine: Engine) -> None:
            try:
                async for message in pull_messages(engine, repo, tag, auth):
                    await queue.put((engine, message))
            finally:
                await queue.put((engine, None))

        async def stream() -> AsyncIterator[bytes]:
            tasks = [asyncio.create_task(pull(e)) for e in targets]
            errors: list[str] = []
            try:
                for engine in targets:
                    yield _line({"status": f"Pulling {ref}...", "id": engine.name})
                remaining = len(targets)
                while remaining:
                    engine, message = await queue.get()
                    if message is None:
                        remaining -= 1
                        failed = any(e.startswith(engine.name + ":") for e in errors)
                        if not failed:
                            try:
                                await engine.refresh_images()
                            except (EngineError, EngineConnectionError):
                                pass
                            yield _line(
                                {"status": f"Pulling {ref}... : downloaded", "id": engine.name}
                            )
                        continue
                    if "error" in message:
                        text = str(message["error"])
                        errors.append(f"{engine.name}: {text}")
                        yield _line(
                            {
                                "status": f"Failed to pull {ref}: {text}",
                                "id": engine.name,
                            }
                        )
                        continue
                    status = message.get("status", "")
                    out = {
                        "status": f"Pulling {ref}... : {status}" if status else f"Pulling {ref}...",
                        "id": engine.name,
                    }
                    if "progressDetail" in message:
                        out["progressDetail"] = message["progressDetail"]
                    if "progress" in message:
                        out["progress"] = message["progress"]
                    yield _line(out)
                if errors:
                    text = "\n".join(errors)
                    yield _line({"error": text, "errorDetail": {"code": 1, "message": text}})
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        return StreamResponse(200, stream())

    async def on_holder(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        engine = find_image_engine(cluster, params["name"])
        return await forward(engine, request, rewrite_target(request, request.path))

    async def tag(request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        holders = [
            e for e in cluster.healthy_engines() if any(i.matches(name) for i in e.images)
        ]
        if not holders:
            raise HTTPError(404, f"No such image: {name}")
        query = {k: v[0] for k, v in request.query.items() if v}
        errors = await _on_each(
            holders, lambda e: e.call("POST", f"/images/{name}/tag", params=query)
        )
        await _on_each(holders, lambda e: e.refresh_images())
        if errors:
            raise HTTPError(_status_of(errors), "\n".join(m for _, m in errors))
        return Response(201, b"", [], None)

    async def remove(request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        holders = [
            e for e in cluster.active_engines() if any(i.matches(name) for i in e.images)
        ]
        if not holders:
            raise HTTPError(404, f"No such image: {name}")
        query = {k: v[0] for k, v in request.query.items() if v}
        results: list[Any] = []

        async def delete(engine: Engine) -> None:
            items = await engine.call("DELETE", f"/images/{name}", params=query)
            results.extend(items or [])

        errors = await _on_each(holders, delete)
        await _on_each(holders, lambda e: e.refresh_images())
        if errors and not results:
            raise HTTPError(_status_of(errors), "\n".join(m for _, m in errors))
        if errors:
            raise HTTPError(500, "\n".join(m for _, m in errors))
        return json_response(results)

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
            if all(any(i.matches(n) for i in engine.images) for n in names):
                return await forward(engine, request, rewrite_target(request, request.path))
        listed = " ".join(names)
        raise HTTPError(404, f"Unable to find a healthy engine containing all images: [{listed}]")

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/get", save)
    router.add("GET", "/images/search", on_any)
    router.add("GET", "/images/{name:.*}/json", on_holder)
    router.add("GET", "/images/{name:.*}/history", on_holder)
    router.add("GET", "/images/{name:.*}/get", on_holder)
    router.add("POST", "/images/{name:.*}/push", on_holder)
    router.add("POST", "/images/{name:.*}/tag", tag)
    router.add("DELETE", "/images/{name:.*}", remove)
    router.add("POST", "/auth", on_any)


async def _on_each(engines: list[Engine], action: Any) -> list[tuple[int, str]]:
    """Run one call per engine at once; failures come back as (status, "node: message")."""
    results = await asyncio.gather(*(action(e) for e in engines), return_exceptions=True)
    errors: list[tuple[int, str]] = []
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, EngineError):
            errors.append((result.status, f"{engine.name}: {result.message}"))
        elif isinstance(result, BaseException):
            errors.append((500, f"{engine.name}: {result}"))
    return errors


def _status_of(errors: list[tuple[int, str]]) -> int:
    statuses = {s for s, _ in errors}
    return statuses.pop() if len(statuses) == 1 else 500


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


__all__ = ["HOP_BY_HOP", "merged_images", "normalize_ref", "register"]
