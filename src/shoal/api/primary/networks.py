"""Network routes, read from the cache: local networks are named `node/name`."""

from __future__ import annotations

from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.records import Network

BUILTIN = frozenset({"bridge", "host", "none"})


def listed_networks(cluster: Cluster) -> list[tuple[Engine, Network, str]]:
    """Every network once: local ones per node as `node/name`, global ones by name."""
    seen: set[str] = set()
    out: list[tuple[Engine, Network, str]] = []
    for engine in cluster.active_engines():
        for network in engine.networks.values():
            if network.scope == "local":
                out.append((engine, network, f"{engine.name}/{network.name}"))
            elif network.id not in seen:
                seen.add(network.id)
                out.append((engine, network, network.name))
    return out


def find_network(cluster: Cluster, ref: str) -> tuple[Engine, Network]:
    """Classic Swarm's resolution (spec 3.3): ID, unique name or `node/name`, ID prefix."""
    entries = listed_networks(cluster)
    for engine, network, _ in entries:
        if network.id == ref or network.id[:12] == ref:
            return engine, network
    named = [
        (e, n)
        for e, n, shown in entries
        if ref in (shown, n.name, f"{e.id}/{n.name}", "/" + n.name)
    ]
    if len(named) == 1:
        return named[0]
    if not named:
        prefixed = [(e, n) for e, n, _ in entries if n.id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
    raise HTTPError(404, f"No such network: {ref}")


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_networks(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        for value in filters.get("type", []):
            if value not in ("custom", "builtin"):
                raise HTTPError(400, f"Invalid filter: 'type'='{value}'")
        out: list[dict[str, Any]] = []
        for engine, network, shown in listed_networks(cluster):
            data = network.inspect
            if "driver" in filters and data.get("Driver") not in filters["driver"]:
                continue
            if "node" in filters and engine.name not in filters["node"]:
                continue
            if "name" in filters and not any(v in shown for v in filters["name"]):
                continue
            if "id" in filters and not any(network.id.startswith(v) for v in filters["id"]):
                continue
            if "type" in filters:
                builtin = network.name in BUILTIN
                if not any((v == "builtin") == builtin for v in filters["type"]):
                    continue
            if "label" in filters:
                labels = data.get("Labels") or {}
                if not all(
                    (k in labels and (not sep or labels[k] == v))
                    for k, sep, v in (f.partition("=") for f in filters["label"])
                ):
                    continue
            out.append({**data, "Name": shown})
        return json_response(out)

    async def inspect(request: Request, params: dict[str, str]) -> Response:
        _, network = find_network(cluster, params["id"])
        return json_response(network.inspect)

    router.add("GET", "/networks", list_networks)
    router.add("GET", "/networks/{id:.*}", inspect)
