"""Image routes: pulls, loads and imports fanned out with per-node progress, and the
single-image calls sent to an engine that holds the image."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import urlencode

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.fanout import Policy, fan_out, healthy_engines, merge_prune
from shoal.api.primary.filters import query_args
from shoal.api.primary.image_streams import Upload, pull_stream
from shoal.api.primary.proxy import forward, quietly, rewrite_target
from shoal.cluster.cluster import Cluster, split_image
from shoal.cluster.engine import Engine
from shoal.scheduler.errors import NO_HEALTHY_NODE, SchedulerError


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


async def create_image(ctx: ApiContext, request: Request, params: Params) -> StreamResponse:
    """`docker pull` (`fromImage`) or `docker import` (`fromSrc`)."""
    from_src = request.arg("fromSrc")
    if from_src is not None:
        return import_image(ctx.cluster, request, from_src)
    from_image = request.arg("fromImage")
    if not from_image:
        raise HTTPError(400, "fromImage or fromSrc is required")
    return pull_image(ctx.cluster, request, from_image)


def pull_image(cluster: Cluster, request: Request, from_image: str) -> StreamResponse:
    """A pull on every active node, or on the one node its `node/` prefix names."""
    node, image = split_node_prefix(cluster, from_image)
    repo, parsed_tag = split_image(image)
    tag = request.arg("tag") or parsed_tag
    shown = familiar_name(repo)
    ref = f"{shown}@{tag}" if ":" in tag else f"{shown}:{tag}"
    targets = [node] if node is not None else cluster.active_engines()
    if not targets:
        raise SchedulerError(NO_HEALTHY_NODE)
    auth = request.headers.get("X-Registry-Auth")
    return StreamResponse(200, pull_stream(targets, ref, repo, tag, auth))


def import_image(cluster: Cluster, request: Request, from_src: str) -> StreamResponse:
    """`docker import`: the tar goes to every healthy node as it arrives."""
    if from_src != "-":
        raise HTTPError(501, "import from a URL is not supported by shoal; send the tar body")
    targets = healthy_engines(cluster)
    query = query_args(request)
    repo = query.get("repo", "")
    ref = f"{repo}:{query['tag']}" if repo and query.get("tag") else repo or "image"
    # Every value kept: `changes` repeats (`USER x`, `CMD [...]`).
    pairs = [(k, v) for k, values in request.query.items() for v in values]
    upload = Upload(
        targets,
        f"/images/create?{urlencode(pairs)}",
        None,
        "Importing",
        f"Failed to import {ref}",
        one_engines_answer=True,
    )
    return upload.response(request)


async def load_images(ctx: ApiContext, request: Request, params: Params) -> StreamResponse:
    """`docker load`: the tar goes to every healthy node."""
    upload = Upload(
        healthy_engines(ctx.cluster),
        "/images/load",
        query_args(request),
        "Loading Image",
        "Failed to load image",
        dedupe_streams=True,
    )
    return upload.response(request)


async def on_image_holder(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Inspect, history, export: from one healthy engine that holds the image."""
    engine = find_image_engine(ctx.cluster, params["name"])
    return await forward(engine, request, rewrite_target(request, request.path))


async def push_image(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Pushed from an engine holding `name:tag` (the tag travels as a query parameter)."""
    name = params["name"]
    tag = request.arg("tag")
    ref = f"{name}:{tag}" if tag and "@" not in name else name
    engine = find_image_engine(ctx.cluster, ref)
    return await forward(engine, request, rewrite_target(request, request.path))


def image_holders(engines: list[Engine], name: str) -> list[Engine]:
    holders = [e for e in engines if e.image_index.find(name) is not None]
    if not holders:
        raise HTTPError(404, f"No such image: {name}")
    return holders


async def tag_image(ctx: ApiContext, request: Request, params: Params) -> Response:
    """Tagged on every healthy node that holds the image."""
    name = params["name"]
    holders = image_holders(ctx.cluster.healthy_engines(), name)
    query = query_args(request)
    try:
        await fan_out(
            holders, lambda e: e.call("POST", f"/images/{name}/tag", params=query), Policy.ALL
        )
    finally:
        await asyncio.gather(*(quietly(e.refresh_images) for e in holders))
    return Response(201, b"", [], None)


async def remove_image(ctx: ApiContext, request: Request, params: Params) -> Response:
    """Removed from every node that holds it; the same untag/delete reads once."""
    name = params["name"]
    holders = image_holders(ctx.cluster.active_engines(), name)
    query = query_args(request)
    try:
        answered = await fan_out(
            holders, lambda e: e.call("DELETE", f"/images/{name}", params=query), Policy.ALL
        )
    finally:
        await asyncio.gather(*(quietly(e.refresh_images) for e in holders))
    results: list[Any] = []
    for _, items in answered:
        results.extend(i for i in items or [] if i not in results)
    return json_response(results)


async def prune_images(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker image prune` on every healthy node: deletions joined, space summed."""
    query = query_args(request)
    engines = healthy_engines(ctx.cluster)
    results = await fan_out(
        engines, lambda e: e.call("POST", "/images/prune", params=query, timeout=None), Policy.ALL
    )
    await asyncio.gather(*(quietly(e.refresh_images) for e in engines))
    return json_response(merge_prune(results, "ImagesDeleted"))


async def on_any_engine(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Calls any engine answers alike (`docker search`, `docker login`, and
    `/distribution/{name}/json`, which only asks the registry)."""
    engine = random.choice(healthy_engines(ctx.cluster))
    return await forward(engine, request, rewrite_target(request, request.path))


async def save_images(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """`docker save`: from one engine that holds every image named."""
    names = request.query.get("names") or []
    for engine in ctx.cluster.healthy_engines():
        if all(engine.image_index.find(n) is not None for n in names):
            return await forward(engine, request, rewrite_target(request, request.path))
    listed = " ".join(names)
    raise HTTPError(404, f"Unable to find a healthy engine containing all images: [{listed}]")
