"""Volume routes, read from the cache: local volumes are named `node/name`."""

from __future__ import annotations

from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.records import Volume


def listed_volumes(cluster: Cluster) -> list[tuple[Engine, Volume, str]]:
    out: list[tuple[Engine, Volume, str]] = []
    for engine in cluster.active_engines():
        for volume in engine.volumes.values():
            shown = f"{engine.name}/{volume.name}" if volume.driver == "local" else volume.name
            out.append((engine, volume, shown))
    return out


def find_volume(cluster: Cluster, ref: str) -> tuple[Engine, Volume]:
    matches = [
        (e, v)
        for e, v, shown in listed_volumes(cluster)
        if ref in (shown, v.name, f"{e.id}/{v.name}", "/" + v.name)
    ]
    if len(matches) == 1:
        return matches[0]
    for engine, volume in matches:
        if volume.name == ref and volume.driver != "local":
            return engine, volume
    raise HTTPError(404, f"No such volume: {ref}")


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_volumes(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        out: list[dict[str, Any]] = []
        for engine, volume, shown in listed_volumes(cluster):
            if "name" in filters and not any(v in shown for v in filters["name"]):
                continue
            local = volume.driver == "local"
            if "node" in filters and local and engine.name not in filters["node"]:
                continue
            if "label" in filters:
                labels = volume.inspect.get("Labels") or {}
                if not all(
                    (k in labels and (not sep or labels[k] == v))
                    for k, sep, v in (f.partition("=") for f in filters["label"])
                ):
                    continue
            out.append({**volume.inspect, "Name": shown})
        return json_response({"Volumes": out, "Warnings": None})

    async def inspect(request: Request, params: dict[str, str]) -> Response:
        _, volume = find_volume(cluster, params["name"])
        return json_response(volume.inspect)

    router.add("GET", "/volumes", list_volumes)
    router.add("GET", "/volumes/{name:.*}", inspect)
