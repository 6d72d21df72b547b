"""`POST /build` on the one node the scheduler picks; BuildKit's routes answer a clear 501.

The build context is streamed to the engine as it arrives, after a look at its first
block: an engine answers a context that is not a tar with a 500 ("unexpected EOF"),
while the client deserves a 400 that says what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.fanout import Policy, fan_out, healthy_engines, merge_prune
from shoal.api.primary.filters import query_args
from shoal.api.primary.proxy import forward
from shoal.api.validation import build_query_object, int64_or_zero
from shoal.cluster.client import error_message
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.resources import (
    SPECIAL_MODES,
    add_constraint,
    has_hard_node_constraint,
    resolve_network,
)
from shoal.scheduler.labels import (
    AFFINITIES_LABEL,
    build_scheduling_config,
    go_json_list,
    parse_label_list,
)

BUILDKIT_UNSUPPORTED = (
    "BuildKit is not supported by shoal; use the classic builder (DOCKER_BUILDKIT=0)"
)
NOT_A_TAR = (
    "the build context is not a tar archive (plain, gzip, bzip2, xz or zstd): unexpected EOF"
)
#: Engine errors (a 500) that mean the context was not an archive, which is the client's fault.
BAD_CONTEXT_ERRORS = ("archive/tar:", "unexpected EOF", "gzip:", "bzip2", "xz:", "zstd")
TAR_BLOCK = 512
#: Magic numbers of the compressions dockerd unpacks a build context from.
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def is_build_context(head: bytes) -> bool:
    """Whether the first bytes of a context can start an archive dockerd accepts.

    A compressed stream is trusted by its magic; a plain tar must open with a header
    block whose checksum holds (an all-zero block is an empty archive).
    """
    if any(head.startswith(m) for m in COMPRESSED_MAGIC):
        return True
    if len(head) < TAR_BLOCK:
        return False
    block = head[:TAR_BLOCK]
    if block == bytes(TAR_BLOCK):
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum((b - 256 if b > 127 else b) for b in block[:148] + block[156:]) + 8 * 32
    return stored in (unsigned, signed)


def json_query(request: Request, name: str) -> dict[str, Any]:
    """A JSON-object query parameter (`buildargs`, `labels`); absent or empty is `{}`."""
    return build_query_object(name, request.arg(name))


def int_query(request: Request, name: str) -> int:
    return int64_or_zero(request.arg(name))


def choose_engine(cluster: Cluster, request: Request) -> tuple[Engine, dict[str, str | None]]:
    """The node for a build, from swarm expressions in its build args and labels,
    and the build args left once those expressions are taken out."""
    buildargs = json_query(request, "buildargs")
    labels = json_query(request, "labels")
    config, remaining = build_scheduling_config(
        {str(k): (None if v is None else str(v)) for k, v in buildargs.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        cpus=int_query(request, "cpushares"),
        memory=int_query(request, "memory"),
    )
    cached = cache_source(cluster, request)
    if cached:
        # Soft: the build still runs elsewhere if that node is ruled out, just without cache.
        config_labels = config.setdefault("Labels", {})
        affinities = parse_label_list(config_labels.get(AFFINITIES_LABEL))
        config_labels[AFFINITIES_LABEL] = go_json_list([*affinities, f"image==~{cached}"])
    home = local_network_home(cluster, request.arg("networkmode"))
    if home is not None and not has_hard_node_constraint(config):
        add_constraint(config, f"node==~{home.name}")
    return cluster.place(config)[0], remaining


def local_network_home(cluster: Cluster, mode: str | None) -> Engine | None:
    """The node of the local network a build's `networkmode` names: the build's steps run
    attached to it, which only that node can do (soft, as for a container's network)."""
    if not mode or mode in SPECIAL_MODES or mode.startswith("container:"):
        return None
    found = resolve_network(cluster.active_engines(), mode)
    if found is None or found[1].scope != "local":
        return None
    return found[0]


def cache_source(cluster: Cluster, request: Request) -> str | None:
    """The first `cachefrom` image some healthy node holds: the build is only fast there."""
    text = request.arg("cachefrom")
    if not text:
        return None
    try:
        refs = json.loads(text)
    except ValueError:
        return None
    if not isinstance(refs, list):
        return None
    engines = cluster.healthy_engines()
    for ref in refs:
        if isinstance(ref, str) and any(e.image_index.find(ref) is not None for e in engines):
            return ref
    return None


def engine_target(request: Request, remaining: dict[str, str | None], had_args: bool) -> str:
    """The engine's URL path and query: the client's, with the build args rewritten."""
    pairs: list[tuple[str, str]] = []
    for key, values in request.query.items():
        if key == "buildargs":
            continue
        pairs.extend((key, v) for v in values)
    if had_args:
        pairs.append(("buildargs", json.dumps(remaining)))
    prefix = f"/v{request.api_version}" if request.api_version else ""
    query = urlencode(pairs)
    return prefix + "/build" + (f"?{query}" if query else "")


async def checked_context(request: Request) -> AsyncIterator[bytes]:
    """The request body as an iterator, after checking its first block is an archive."""
    source = request.stream().__aiter__()
    head = b""
    while len(head) < TAR_BLOCK:
        try:
            head += await source.__anext__()
        except StopAsyncIteration:
            break
    if not is_build_context(head):
        raise HTTPError(400, NOT_A_TAR)

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for piece in source:
            yield piece

    return body()


async def build_image(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    version = request.arg("version") or "1"
    if version == "2":
        raise HTTPError(501, BUILDKIT_UNSUPPORTED)
    if version != "1":
        raise HTTPError(400, f"invalid version {version}")
    engine, remaining = choose_engine(ctx.cluster, request)
    target = engine_target(request, remaining, request.arg("buildargs") is not None)
    data: AsyncIterator[bytes] | None = None
    if not request.arg("remote"):
        data = await checked_context(request)
    elif not request.body_complete:
        data = request.stream()

    async def after() -> None:
        await engine.refresh_images()
        # The build's intermediate containers came and went while it ran: the cache is
        # brought level before the client reads the end, so its next list is the engine's.
        await engine.refresh_containers()

    response = await forward(engine, request, target, body=data, after=after)
    if (
        isinstance(response, Response)
        and response.status == 500
        and any(m in error_message(response.body, 500) for m in BAD_CONTEXT_ERRORS)
    ):
        response.status = 400  # a compressed body whose content is not a tar
    return response


async def prune_build_cache(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker builder prune` on every healthy node: caches joined, space summed."""
    query = query_args(request)
    results = await fan_out(
        healthy_engines(ctx.cluster),
        lambda e: e.call("POST", "/build/prune", params=query, timeout=None),
        Policy.ALL,
    )
    return json_response(merge_prune(results, "CachesDeleted"))


async def cancel_build(ctx: ApiContext, request: Request, params: Params) -> Response:
    if not request.arg("id"):
        raise HTTPError(400, "build ID not provided")
    raise HTTPError(501, BUILDKIT_UNSUPPORTED)


async def buildkit(ctx: ApiContext, request: Request, params: Params) -> Response:
    raise HTTPError(501, BUILDKIT_UNSUPPORTED)
