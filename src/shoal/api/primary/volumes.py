"""Volume routes: `local` volumes are named `node/name` and made on ONE node.

Classic Swarm created every volume on every engine (its #1529); shoal follows the
driver's scope instead: a local volume goes to the node named (`node/name`), to the
node that already has it or its Compose project, or to the scheduler's choice. Only
the `com.docker.swarm.whitelists` label still asks for a copy on each allowed node.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.fanout import Policy, fan_out, prune_each
from shoal.api.primary.filters import match_labels, parse_filters
from shoal.api.primary.proxy import quietly
from shoal.api.validation import VOLUME_CREATE_BODY, read_body
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineError
from shoal.cluster.records import Volume
from shoal.cluster.resources import (
    listed_volumes,
    placement_config,
    resolve_volume,
    split_node_ref,
    volumes_matching,
)
from shoal.scheduler.labels import WHITELISTS_LABEL

DANGLING_VALUES = {"true": True, "1": True, "false": False, "0": False}


def not_found(ref: str) -> HTTPError:
    """The engine's own 404 text."""
    return HTTPError(404, f"get {ref}: no such volume")


def used_volumes(engine: Engine) -> set[str]:
    """Names of the volumes some container of this engine mounts, running or not."""
    return {
        str(m.get("Name"))
        for c in engine.containers.values()
        for m in c.inspect.get("Mounts") or []
        if m.get("Type") == "volume" and m.get("Name")
    }


def dangling_filter(filters: dict[str, list[str]]) -> bool | None:
    dangling: bool | None = None
    for value in filters.get("dangling", []):
        if value.lower() not in DANGLING_VALUES:
            raise HTTPError(400, f"Invalid filter 'dangling={value}'")
        dangling = DANGLING_VALUES[value.lower()]
    return dangling


def volume_matches(
    engine: Engine, volume: Volume, shown: str, filters: dict[str, list[str]]
) -> bool:
    """`docker volume ls --filter` other than `dangling`, plus shoal's `node`."""
    if "name" in filters and not any(v in shown for v in filters["name"]):
        return False
    if (
        "node" in filters
        and volume.driver == "local"
        and not ({engine.name, engine.id} & set(filters["node"]))
    ):
        return False
    if "driver" in filters and volume.driver not in filters["driver"]:
        return False
    return "label" not in filters or match_labels(
        volume.inspect.get("Labels") or {}, filters["label"]
    )


async def list_volumes(ctx: ApiContext, request: Request, params: Params) -> Response:
    filters = parse_filters(request.arg("filters"))
    dangling = dangling_filter(filters)
    used: dict[int, set[str]] = {}
    out: list[dict[str, Any]] = []
    for engine, volume, shown in listed_volumes(ctx.cluster.active_engines()):
        if not volume_matches(engine, volume, shown, filters):
            continue
        if dangling is not None:
            names = used.setdefault(id(engine), used_volumes(engine))
            if (volume.name not in names) != dangling:
                continue
        out.append({**volume.inspect, "Name": shown})
    return json_response({"Volumes": out, "Warnings": None})


async def inspect_volume(ctx: ApiContext, request: Request, params: Params) -> Response:
    ref = params["name"]
    found = resolve_volume(ctx.cluster.active_engines(), ref)
    if found is None:
        raise not_found(ref)
    return json_response(found[1].inspect)


def choose_engines(
    cluster: Cluster, name: str, node: str | None, labels: dict[str, str] | None
) -> list[Engine]:
    """Where a new volume goes: where it already is, the node named, or the scheduler's
    choice (every allowed node for a whitelisted one)."""
    engines = cluster.active_engines()
    whitelisted = node is None and bool((labels or {}).get(WHITELISTS_LABEL))
    if node is None and not whitelisted:
        # Docker's create is idempotent: an existing volume is answered, not doubled.
        holders = [e for e, v in volumes_matching(engines, name) if v.name == name]
        if holders:
            return holders[:1]
    config = placement_config(engines, node, labels)
    if whitelisted and labels:
        config["Labels"][WHITELISTS_LABEL] = labels[WHITELISTS_LABEL]
    chosen = cluster.place(config)
    return chosen if whitelisted else chosen[:1]


async def create_volume(ctx: ApiContext, request: Request, params: Params) -> Response:
    cluster = ctx.cluster
    body = await read_body(request, VOLUME_CREATE_BODY)
    name = str(body.get("Name") or "")
    node: str | None = None
    if not name:
        name = secrets.token_hex(32)
    elif "/" in name:
        engine, bare = split_node_ref(cluster.active_engines(), name)
        node = engine.name if engine is not None else name.partition("/")[0]
        name = bare if engine is not None else name.partition("/")[2]
    body["Name"] = name
    labels = body.get("Labels") if isinstance(body.get("Labels"), dict) else None
    targets = choose_engines(cluster, name, node, labels)

    async def create_on(engine: Engine) -> dict[str, Any]:
        created = await engine.call("POST", "/volumes/create", body=body)
        await quietly(engine.refresh_volumes)
        return dict(created or {})

    created = (await fan_out(targets, create_on, Policy.ALL))[-1][1]
    if created.get("Scope") == "global":
        others = [e for e in cluster.active_engines() if e not in targets]
        await asyncio.gather(*(quietly(e.refresh_volumes) for e in others))
    return json_response(created, 201)


async def remove_volume(ctx: ApiContext, request: Request, params: Params) -> Response:
    ref = params["name"]
    found = dict(volumes_matching(ctx.cluster.active_engines(), ref))
    if not found:
        raise not_found(ref)
    query = {"force": "1"} if request.flag("force") else None

    async def remove_on(engine: Engine) -> None:
        volume = found[engine]
        try:
            await engine.call("DELETE", f"/volumes/{volume.name}", params=query)
        except EngineError as exc:
            if exc.status != 404:
                raise  # a 404 means it is already gone: what the client asked for
        engine.forget_volume(volume.name)

    await fan_out(list(found), remove_on, Policy.ALL)
    return Response(204, b"", [], None)


async def prune_volumes(ctx: ApiContext, request: Request, params: Params) -> Response:
    merged = await prune_each(ctx.cluster, request, "volumes", lambda e: e.refresh_volumes())
    return json_response(merged)
