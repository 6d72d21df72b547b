"""Network routes: local networks are named `node/name` and live on one scheduled node.

Reads come from the cache. A create picks its node (the one named, the node of its
Compose project, or the scheduler's choice); connect and disconnect go to the
container's engine. Every change refreshes the cache before answering, so the next
read through shoal sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.system import parse_filters
from shoal.api.router import Router
from shoal.api.validation import NETWORK_CREATE_BODY, read_body
from shoal.cluster.client import EngineConnectionError, EngineError
from shoal.cluster.cluster import Cluster, NotFound, Placed
from shoal.cluster.engine import Engine
from shoal.cluster.records import Network
from shoal.cluster.resources import listed_networks as _listed
from shoal.cluster.resources import placement_config, resolve_network
from shoal.scheduler.errors import SchedulerError

BUILTIN = frozenset({"bridge", "host", "none"})


def not_found(ref: str) -> HTTPError:
    """The engine's own 404 text, so clients print what they print against dockerd."""
    return HTTPError(404, f"network {ref} not found")


def engine_error(exc: EngineError | EngineConnectionError) -> HTTPError:
    if isinstance(exc, EngineError):
        return HTTPError(exc.status, exc.message)
    return HTTPError(500, str(exc))


def listed_networks(cluster: Cluster) -> list[tuple[Engine, Network, str]]:
    """Every network once: local ones per node as `node/name`, global ones by name."""
    return _listed(cluster.active_engines())


def find_network(cluster: Cluster, ref: str) -> tuple[Engine, Network]:
    found = resolve_network(cluster.active_engines(), ref)
    if found is None:
        raise not_found(ref)
    return found


def network_engines(cluster: Cluster, engine: Engine, network: Network) -> list[Engine]:
    """The engines a network spans: its own for a local one, all for a global one."""
    return [engine] if network.scope == "local" else cluster.active_engines()


def network_containers(engines: list[Engine], network: Network) -> dict[str, Any]:
    """The `Containers` map of an inspect, from the container cache (spec 3.10)."""
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


def match_labels(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's `label` filter: every `key` or `key=value` given must hold."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


async def refresh_quietly(engine: Engine, nid: str | None = None) -> None:
    with contextlib.suppress(EngineError, EngineConnectionError):
        if nid is None:
            await engine.refresh_networks()
        else:
            await engine.refresh_network(nid)


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_networks(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        for value in filters.get("type", []):
            if value not in ("custom", "builtin"):
                raise HTTPError(400, f"Invalid filter: 'type'='{value}'")
        for value in filters.get("dangling", []):
            if value.lower() not in ("true", "false", "1", "0"):
                raise HTTPError(400, f"Invalid filter: 'dangling'='{value}'")
        out: list[dict[str, Any]] = []
        for engine, network, shown in listed_networks(cluster):
            data = network.inspect
            if "driver" in filters and data.get("Driver") not in filters["driver"]:
                continue
            if "scope" in filters and network.scope not in filters["scope"]:
                continue
            if "node" in filters and not (
                {engine.name, engine.id} & set(filters["node"])
            ):
                continue
            if "name" in filters and not any(
                v in shown or v == network.name for v in filters["name"]
            ):
                continue
            if "id" in filters and not any(network.id.startswith(v) for v in filters["id"]):
                continue
            if "type" in filters:
                builtin = network.name in BUILTIN
                if not any((v == "builtin") == builtin for v in filters["type"]):
                    continue
            if "label" in filters and not match_labels(
                data.get("Labels") or {}, filters["label"]
            ):
                continue
            if "dangling" in filters:
                want = filters["dangling"][0].lower() in ("true", "1")
                attached = network_containers(
                    network_engines(cluster, engine, network), network
                )
                dangling = network.name not in BUILTIN and not attached
                if dangling != want:
                    continue
            out.append({**data, "Name": shown, "Containers": {}})
        return json_response(out)

    async def inspect(request: Request, params: dict[str, str]) -> Response:
        engine, network = find_network(cluster, params["id"])
        data = dict(network.inspect)
        data["Containers"] = network_containers(
            network_engines(cluster, engine, network), network
        )
        return json_response(data)

    async def create(request: Request, params: dict[str, str]) -> Response:
        body = await read_body(request, NETWORK_CREATE_BODY)
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise HTTPError(400, "network name must be provided")
        engines = cluster.active_engines()
        node: str | None = None
        if "/" in name:
            node, _, name = name.partition("/")
        body["Name"] = name
        for engine, network, _ in listed_networks(cluster):
            if network.name == name and (node is None or node in (engine.name, engine.id)):
                raise HTTPError(409, f"network with name {name} already exists")
        labels = body.get("Labels") if isinstance(body.get("Labels"), dict) else None
        config = placement_config(engines, node, labels)
        try:
            ranked = cluster.scheduler.select(config, cluster.node_views())
        except SchedulerError as exc:
            raise HTTPError(500, str(exc)) from None
        engine = cluster.engine_for_node(ranked[0])
        try:
            created = await engine.call("POST", "/networks/create", body=body)
        except (EngineError, EngineConnectionError) as exc:
            raise engine_error(exc) from None
        nid = str(created.get("Id", ""))
        await refresh_quietly(engine, nid)
        made = engine.networks.get(nid)
        if made is not None and made.scope != "local":
            others = [e for e in cluster.active_engines() if e is not engine]
            await asyncio.gather(*(refresh_quietly(e) for e in others))
        return json_response(created, 201)

    async def resolve_endpoint(
        request: Request, params: dict[str, str]
    ) -> tuple[Engine, Network, Placed, dict[str, Any]]:
        ref = params["id"]
        net_engine, network = find_network(cluster, ref)
        body = await request.json()
        if not isinstance(body, dict) or not body.get("Container"):
            raise HTTPError(404, "Container is not specified")
        cref = str(body["Container"])
        try:
            placed = cluster.find_container(cref)
        except NotFound:
            raise HTTPError(404, f"No such container: {cref}") from None
        if network.scope == "local" and net_engine is not placed.engine:
            raise HTTPError(
                404,
                f"network {ref} not found on node {placed.engine.name}, "
                f"where container {cref} runs (it is local to {net_engine.name})",
            )
        return net_engine, network, placed, {**body, "Container": placed.container.id}

    async def endpoint_change(request: Request, params: dict[str, str], action: str) -> Response:
        _, network, placed, body = await resolve_endpoint(request, params)
        engine = placed.engine
        try:
            await engine.call("POST", f"/networks/{network.id}/{action}", body=body)
        except (EngineError, EngineConnectionError) as exc:
            raise engine_error(exc) from None
        await refresh_quietly(engine, network.id)
        with contextlib.suppress(EngineError, EngineConnectionError):
            await engine.refresh_container(placed.container.id)
        return Response(200, b"", [], None)

    async def connect(request: Request, params: dict[str, str]) -> Response:
        return await endpoint_change(request, params, "connect")

    async def disconnect(request: Request, params: dict[str, str]) -> Response:
        return await endpoint_change(request, params, "disconnect")

    async def remove(request: Request, params: dict[str, str]) -> Response:
        engine, network = find_network(cluster, params["id"])
        try:
            await engine.call("DELETE", f"/networks/{network.id}")
        except EngineError as exc:
            if exc.status != 404:
                raise engine_error(exc) from None
        except EngineConnectionError as exc:
            raise engine_error(exc) from None
        for other in network_engines(cluster, engine, network):
            other.networks.pop(network.id, None)
        return Response(204, b"", [], None)

    async def prune(request: Request, params: dict[str, str]) -> Response:
        parse_filters(request.arg("filters"))
        query = {"filters": request.arg("filters") or "{}"}
        engines = cluster.healthy_engines()

        async def prune_one(engine: Engine) -> list[str]:
            result = await engine.call("POST", "/networks/prune", params=query)
            await refresh_quietly(engine)
            return [f"{engine.name}/{n}" for n in (result or {}).get("NetworksDeleted") or []]

        results = await asyncio.gather(*(prune_one(e) for e in engines), return_exceptions=True)
        deleted: list[str] = []
        errors: list[str] = []
        for engine, result in zip(engines, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(f"{engine.name}: {result}")
            else:
                deleted.extend(result)
        if errors and not deleted:
            raise HTTPError(500, "; ".join(errors))
        return json_response({"NetworksDeleted": deleted or None})

    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("POST", "/networks/{id:.*}/connect", connect)
    router.add("POST", "/networks/{id:.*}/disconnect", disconnect)
    router.add("GET", "/networks/{id:.*}", inspect)
    router.add("DELETE", "/networks/{id:.*}", remove)
