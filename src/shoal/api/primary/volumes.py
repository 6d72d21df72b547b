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
from shoal.api.primary.context import ApiContext
from shoal.api.primary.networks import engine_error, match_labels
from shoal.api.primary.proxy import quietly
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.api.validation import VOLUME_CREATE_BODY, read_body
from shoal.cluster.client import EngineConnectionError, EngineError
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.records import Volume
from shoal.cluster.resources import (
    listed_volumes as _listed,
)
from shoal.cluster.resources import (
    placement_config,
    resolve_volume,
    split_node_ref,
    volumes_matching,
)
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.labels import WHITELISTS_LABEL

DANGLING_VALUES = {"true": True, "1": True, "false": False, "0": False}


def not_found(ref: str) -> HTTPError:
    """The engine's own 404 text."""
    return HTTPError(404, f"get {ref}: no such volume")


def listed_volumes(cluster: Cluster) -> list[tuple[Engine, Volume, str]]:
    return _listed(cluster.active_engines())


def find_volume(cluster: Cluster, ref: str) -> tuple[Engine, Volume]:
    found = resolve_volume(cluster.active_engines(), ref)
    if found is None:
        raise not_found(ref)
    return found


def used_volumes(engine: Engine) -> set[str]:
    """Names of the volumes some container of this engine mounts, running or not."""
    return {
        str(m.get("Name"))
        for c in engine.containers.values()
        for m in c.inspect.get("Mounts") or []
        if m.get("Type") == "volume" and m.get("Name")
    }


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_volumes(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        dangling: bool | None = None
        for value in filters.get("dangling", []):
            if value.lower() not in DANGLING_VALUES:
                raise HTTPError(400, f"Invalid filter 'dangling={value}'")
            dangling = DANGLING_VALUES[value.lower()]
        used: dict[int, set[str]] = {}
        out: list[dict[str, Any]] = []
        for engine, volume, shown in listed_volumes(cluster):
            if "name" in filters and not any(v in shown for v in filters["name"]):
                continue
            local = volume.driver == "local"
            if "node" in filters and local and not (
                {engine.name, engine.id} & set(filters["node"])
            ):
                continue
            if "driver" in filters and volume.driver not in filters["driver"]:
                continue
            if "label" in filters and not match_labels(
                volume.inspect.get("Labels") or {}, filters["label"]
            ):
                continue
            if dangling is not None:
                names = used.setdefault(id(engine), used_volumes(engine))
                if (volume.name not in names) != dangling:
                    continue
            out.append({**volume.inspect, "Name": shown})
        return json_response({"Volumes": out, "Warnings": None})

    async def inspect(request: Request, params: dict[str, str]) -> Response:
        _, volume = find_volume(cluster, params["name"])
        return json_response(volume.inspect)

    def choose_engines(name: str, node: str | None, labels: dict[str, str] | None) -> list[Engine]:
        engines = cluster.active_engines()
        if node is None and not (labels or {}).get(WHITELISTS_LABEL):
            # Docker's create is idempotent: an existing volume is answered, not doubled.
            holders = [e for e, v in volumes_matching(engines, name) if v.name == name]
            if holders:
                return holders[:1]
        config = placement_config(engines, node, labels)
        if node is None and labels and labels.get(WHITELISTS_LABEL):
            config["Labels"][WHITELISTS_LABEL] = labels[WHITELISTS_LABEL]
        try:
            ranked = cluster.scheduler.select(config, cluster.node_views())
        except SchedulerError as exc:
            raise HTTPError(500, str(exc)) from None
        chosen = [cluster.engine_for_node(n) for n in ranked]
        if node is None and labels and labels.get(WHITELISTS_LABEL):
            return chosen
        return chosen[:1]

    async def create(request: Request, params: dict[str, str]) -> Response:
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
        targets = choose_engines(name, node, labels)

        async def create_on(engine: Engine) -> dict[str, Any]:
            created = await engine.call("POST", "/volumes/create", body=body)
            await quietly(engine.refresh_volumes)
            return dict(created or {})

        results = await asyncio.gather(*(create_on(e) for e in targets), return_exceptions=True)
        created: dict[str, Any] | None = None
        error: EngineError | EngineConnectionError | None = None
        for result in results:
            if isinstance(result, (EngineError, EngineConnectionError)):
                error = result
            elif isinstance(result, BaseException):
                raise result
            else:
                created = result
        if error is not None:
            raise engine_error(error) from None
        assert created is not None
        if created.get("Scope") == "global":
            others = [e for e in cluster.active_engines() if e not in targets]
            await asyncio.gather(*(quietly(e.refresh_volumes) for e in others))
        return json_response(created, 201)

    async def remove(request: Request, params: dict[str, str]) -> Response:
        ref = params["name"]
        found = volumes_matching(cluster.active_engines(), ref)
        if not found:
            raise not_found(ref)
        query = {"force": "1"} if request.flag("force") else None

        async def remove_on(engine: Engine, volume: Volume) -> None:
            try:
                await engine.call("DELETE", f"/volumes/{volume.name}", params=query)
            except EngineError as exc:
                if exc.status != 404:
                    raise
            engine.volumes.pop(volume.name, None)

        results = await asyncio.gather(
            *(remove_on(e, v) for e, v in found), return_exceptions=True
        )
        errors = [
            (engine, result)
            for (engine, _), result in zip(found, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if len(errors) == 1 and isinstance(errors[0][1], (EngineError, EngineConnectionError)):
            raise engine_error(errors[0][1])
        if errors:
            raise HTTPError(500, ", ".join(f"{e.name}: {err}" for e, err in errors))
        return Response(204, b"", [], None)

    async def prune(request: Request, params: dict[str, str]) -> Response:
        parse_filters(request.arg("filters"))
        query = {"filters": request.arg("filters") or "{}"}
        engines = cluster.healthy_engines()

        async def prune_one(engine: Engine) -> dict[str, Any]:
            result = await engine.call("POST", "/volumes/prune", params=query)
            await quietly(engine.refresh_volumes)
            return dict(result or {})

        results = await asyncio.gather(*(prune_one(e) for e in engines), return_exceptions=True)
        deleted: list[str] = []
        reclaimed = 0
        errors: list[str] = []
        for engine, result in zip(engines, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(f"{engine.name}: {result}")
                continue
            deleted += [f"{engine.name}/{n}" for n in result.get("VolumesDeleted") or []]
            reclaimed += int(result.get("SpaceReclaimed") or 0)
        if errors and not deleted:
            raise HTTPError(500, ", ".join(errors))
        return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name:.*}", inspect)
    router.add("DELETE", "/volumes/{name:.*}", remove)
