"""Network routes: local networks are named `node/name` and live on one scheduled node.

Reads come from the cache. A create picks its node (the one named, the node of its
Compose project, or the scheduler's choice); connect and disconnect go to the
container's engine. Every change refreshes the cache before answering, so the next
read through shoal sees it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.fanout import prune_each
from shoal.api.primary.filters import match_labels, parse_filters
from shoal.api.primary.proxy import quietly
from shoal.api.validation import NETWORK_CREATE_BODY, read_body
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineError
from shoal.cluster.index import Placed
from shoal.cluster.records import Network
from shoal.cluster.resources import listed_networks, placement_config, resolve_network

BUILTIN = frozenset({"bridge", "host", "none"})


def find_network(cluster: Cluster, ref: str) -> tuple[Engine, Network]:
    found = resolve_network(cluster.active_engines(), ref)
    if found is None:
        raise HTTPError(404, f"network {ref} not found")  # the engine's own text
    return found


def network_engines(cluster: Cluster, engine: Engine, network: Network) -> list[Engine]:
    """The engines a network spans: its own for a local one, all for a global one."""
    return [engine] if network.scope == "local" else cluster.active_engines()


def network_containers(engines: list[Engine], network: Network) -> dict[str, Any]:
    """The `Containers` map of an inspect, built from the container cache."""
    out: dict[str, Any] = {}
    for engine in engines:
        for container in engine.containers.values():
            settings = container.inspect.get("NetworkSettings") or {}
            for endpoint in (settings.get("Networks") or {}).values():
                if endpoint.get("NetworkID") != network.id or not endpoint.get("EndpointID"):
                    continue
                ipv4 = endpoint.get("IPAddress") or ""
                ipv6 = endpoint.get("GlobalIPv6Address") or ""
                out[container.id] = {
                    "Name": container.name.lstrip("/"),
                    "EndpointID": endpoint.get("EndpointID", ""),
                    "MacAddress": endpoint.get("MacAddress", ""),
                    "IPv4Address": f"{ipv4}/{endpoint.get('IPPrefixLen', 0)}" if ipv4 else "",
                    "IPv6Address": (
                        f"{ipv6}/{endpoint.get('GlobalIPv6PrefixLen', 0)}" if ipv6 else ""
                    ),
                }
    return out


def validate_network_filters(filters: dict[str, list[str]]) -> None:
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise HTTPError(400, f"Invalid filter: 'type'='{value}'")
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise HTTPError(400, f"Invalid filter: 'dangling'='{value}'")


def network_matches(
    cluster: Cluster, engine: Engine, network: Network, shown: str,
    filters: dict[str, list[str]],
) -> bool:  # fmt: skip
    """`docker network ls --filter`, plus shoal's `node`."""
    data = network.inspect
    checks = {
        "driver": lambda v: data.get("Driver") in v,
        "scope": lambda v: network.scope in v,
        "node": lambda v: bool({engine.name, engine.id} & set(v)),
        "name": lambda v: any(x in shown or x == network.name for x in v),
        "id": lambda v: any(network.id.startswith(x) for x in v),
        "type": lambda v: any((x == "builtin") == (network.name in BUILTIN) for x in v),
        "label": lambda v: match_labels(data.get("Labels") or {}, v),
        "dangling": lambda v: (
            (v[0].lower() in ("true", "1")) == _dangling(cluster, engine, network)
        ),
    }
    return all(checks[k](v) for k, v in filters.items() if k in checks)


def _dangling(cluster: Cluster, engine: Engine, network: Network) -> bool:
    attached = network_containers(network_engines(cluster, engine, network), network)
    return network.name not in BUILTIN and not attached


async def list_networks(ctx: ApiContext, request: Request, params: Params) -> Response:
    filters = parse_filters(request.arg("filters"))
    validate_network_filters(filters)
    return json_response(
        [
            {**network.inspect, "Name": shown, "Containers": {}}
            for engine, network, shown in listed_networks(ctx.cluster.active_engines())
            if network_matches(ctx.cluster, engine, network, shown, filters)
        ]
    )


async def inspect_network(ctx: ApiContext, request: Request, params: Params) -> Response:
    """From the cache; `?scope=` (local, global, swarm) finds only a network of that scope,
    as an engine's inspect does."""
    engine, network = find_network(ctx.cluster, params["id"])
    scope = request.arg("scope")
    if scope and network.scope != scope:
        raise HTTPError(404, f"network {params['id']} not found")
    data = dict(network.inspect)
    data["Containers"] = network_containers(network_engines(ctx.cluster, engine, network), network)
    return json_response(data)


def needs_swarm(body: dict[str, Any]) -> bool:
    """A create only a swarm-mode manager can serve: an ingress or attachable network, swarm
    scope asked for, or an overlay network not asked to be local or global."""
    scope = body.get("Scope") or ""
    overlay = body.get("Driver") == "overlay" and scope not in ("local", "global")
    return bool(body.get("Ingress") or body.get("Attachable") or scope == "swarm" or overlay)


async def create_network(ctx: ApiContext, request: Request, params: Params) -> Response:
    cluster = ctx.cluster
    body = await read_body(request, NETWORK_CREATE_BODY)
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise HTTPError(400, "network name must be provided")
    engines = cluster.active_engines()
    node: str | None = None
    if "/" in name:
        node, _, name = name.partition("/")
    body["Name"] = name
    for engine, network, _ in listed_networks(engines):
        if network.name == name and (node is None or node in (engine.name, engine.id)):
            raise HTTPError(409, f"network with name {name} already exists")
    labels = body.get("Labels") if isinstance(body.get("Labels"), dict) else None
    manager = await ctx.swarm_mode.manager_engine(cluster) if needs_swarm(body) else None
    if manager is not None and node is None:
        engine = manager  # a swarm-mode network: made by the swarm, on its manager
    else:
        engine = cluster.place(placement_config(engines, node, labels))[0]
    created = await engine.call("POST", "/networks/create", body=body)
    nid = str(created.get("Id", ""))
    await quietly(lambda: engine.refresh_network(nid))
    made = engine.networks.get(nid)
    if made is not None and made.scope != "local":
        others = [e for e in cluster.active_engines() if e is not engine]
        await asyncio.gather(*(quietly(e.refresh_networks) for e in others))
    return json_response(created, 201)


async def resolve_endpoint(
    cluster: Cluster, request: Request, ref: str
) -> tuple[Network, Placed, dict[str, Any]]:
    """The network, the container and the engine's body of a connect or disconnect."""
    net_engine, network = find_network(cluster, ref)
    body = await request.json()
    if not isinstance(body, dict) or not body.get("Container"):
        raise HTTPError(404, "Container is not specified")
    cref = str(body["Container"])
    placed = cluster.find_container(cref)
    if network.scope == "local" and net_engine is not placed.engine:
        raise HTTPError(
            404,
            f"network {ref} not found on node {placed.engine.name}, "
            f"where container {cref} runs (it is local to {net_engine.name})",
        )
    return network, placed, {**body, "Container": placed.container.id}


async def connect_network(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_endpoint(ctx, request, params["id"], "connect")


async def disconnect_network(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_endpoint(ctx, request, params["id"], "disconnect")


async def change_endpoint(ctx: ApiContext, request: Request, ref: str, action: str) -> Response:
    """`connect` or `disconnect` on the container's engine, then both caches refreshed."""
    network, placed, body = await resolve_endpoint(ctx.cluster, request, ref)
    engine = placed.engine
    await engine.call("POST", f"/networks/{network.id}/{action}", body=body)
    await quietly(lambda: engine.refresh_network(network.id))
    await quietly(lambda: engine.refresh_container(placed.container.id))
    return Response(200, b"", [], None)


async def remove_network(ctx: ApiContext, request: Request, params: Params) -> Response:
    engine, network = find_network(ctx.cluster, params["id"])
    try:
        await engine.call("DELETE", f"/networks/{network.id}")
    except EngineError as exc:
        if exc.status != 404:
            raise  # a 404 means it is already gone: what the client asked for
    for other in network_engines(ctx.cluster, engine, network):
        other.forget_network(network.id)
    return Response(204, b"", [], None)


async def prune_networks(ctx: ApiContext, request: Request, params: Params) -> Response:
    merged = await prune_each(ctx.cluster, request, "networks", lambda e: e.refresh_networks())
    return json_response({"NetworksDeleted": merged["NetworksDeleted"]})
