"""Managed plugin routes: plugins are per engine, so they are handled like images.

An install (`pull`, `create`) goes to every healthy node; a list shows each plugin once,
by name; an inspect answers from a node holding it; a change (enable, disable, set,
upgrade, remove) goes to every node holding it; a push goes from one of them. Which
nodes hold a plugin is asked of the engines on each call: plugin calls are rare, and a
cache would only add a way to be wrong.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.fanout import Policy, by_node_name, fan_out, healthy_engines
from shoal.api.primary.filters import parse_filters, query_args
from shoal.api.primary.image_streams import Upload, upload_to_each
from shoal.api.primary.proxy import forward, rewrite_target
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineError

#: Seconds one engine may take over a plugin change (an enable waits for the plugin's socket).
CHANGE_TIMEOUT: Final = 300.0

Plugin = dict[str, Any]


def plugin_path(name: str, action: str = "") -> str:
    return f"/plugins/{quote(name, safe='/:@')}" + (f"/{action}" if action else "")


def merged(copies: list[Plugin]) -> Plugin:
    """One plugin as the cluster holds it: the first node's copy (by node name), enabled
    only if every node's copy is, so a node left disabled shows."""
    first = dict(copies[0])
    first["Enabled"] = all(bool(c.get("Enabled")) for c in copies)
    return first


async def copy_on(engine: Engine, name: str) -> Plugin | None:
    """The engine's copy of plugin `name`, or None if it has none."""
    try:
        found = await engine.call("GET", plugin_path(name, "json"))
    except EngineError as exc:
        if exc.status == 404:
            return None
        raise
    return found if isinstance(found, dict) else None


async def plugin_holders(
    cluster: Cluster, name: str, policy: Policy
) -> list[tuple[Engine, Plugin]]:
    """Every healthy node holding plugin `name`, in node-name order, with its copy; the
    engine's own 404 if none does."""
    engines = by_node_name(healthy_engines(cluster))
    answered = await fan_out(engines, lambda e: copy_on(e, name), policy)
    holders = [(engine, copy) for engine, copy in answered if copy is not None]
    if not holders:
        raise HTTPError(404, f'plugin "{name}" not found')
    return holders


async def list_plugins(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker plugin ls`: each plugin once by name (see `merged`); the `enabled` filter is
    applied to the merged answer, the others by the engines."""
    filters = parse_filters(request.arg("filters"))
    enabled = filters.pop("enabled", None)
    if enabled is not None:
        enabled_wanted(enabled)
    query = {"filters": json_filters(filters)} if filters else {}
    engines = by_node_name(healthy_engines(ctx.cluster))
    answered = await fan_out(
        engines, lambda e: e.call("GET", "/plugins", params=query), Policy.ANY
    )
    copies: dict[str, list[Plugin]] = {}
    for _, listing in answered:
        for plugin in listing or []:
            copies.setdefault(str(plugin.get("Name", "")), []).append(plugin)
    plugins = [merged(c) for c in copies.values()]
    if enabled is not None:
        wanted = enabled_wanted(enabled)
        plugins = [p for p in plugins if p["Enabled"] is wanted]
    return json_response(plugins)


def enabled_wanted(values: list[str]) -> bool:
    """The `enabled` filter read as the engine reads it: `true` wins, then `false`; any
    other value is refused (checked before the engines are asked)."""
    if "true" in values or "false" in values:
        return "true" in values
    raise HTTPError(400, f"Invalid filter 'enabled=[{' '.join(values)}]'")


def json_filters(filters: dict[str, list[str]]) -> str:
    return json.dumps({k: dict.fromkeys(v, True) for k, v in filters.items()})


async def inspect_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    holders = await plugin_holders(ctx.cluster, params["name"], Policy.ANY)
    return json_response(merged([copy for _, copy in holders]))


async def pull_plugin(ctx: ApiContext, request: Request, params: Params) -> StreamResponse:
    """`docker plugin install`: pulled on every healthy node, progress per node."""
    query = query_args(request)
    name = query.get("name") or query.get("remote") or "plugin"
    upload = Upload(
        healthy_engines(ctx.cluster), "/plugins/pull", query, "Pulling plugin",
        f"Failed to pull plugin {name}", refresh_images=False,
    )  # fmt: skip
    return upload.response(request)


async def create_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker plugin create`: the tar goes to every healthy node as it arrives."""
    targets = healthy_engines(ctx.cluster)
    await upload_to_each(targets, request, "/plugins/create", query_args(request))
    return Response(204, b"", [], None)


async def upgrade_plugin(ctx: ApiContext, request: Request, params: Params) -> StreamResponse:
    """`docker plugin upgrade`: on every node holding the plugin, progress per node."""
    name = params["name"]
    holders = await plugin_holders(ctx.cluster, name, Policy.ALL)
    upload = Upload(
        [engine for engine, _ in holders], plugin_path(name, "upgrade"), query_args(request),
        "Upgrading plugin", f"Failed to upgrade plugin {name}", refresh_images=False,
    )  # fmt: skip
    return upload.response(request)


async def push_plugin(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Pushed from one node holding it (the first by name): one push publishes it."""
    holders = await plugin_holders(ctx.cluster, params["name"], Policy.ANY)
    return await forward(holders[0][0], request, rewrite_target(request, request.path))


async def enable_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_plugin(ctx, request, params["name"], "enable", 200)


async def disable_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_plugin(ctx, request, params["name"], "disable", 200)


async def set_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_plugin(ctx, request, params["name"], "set", 204)


async def remove_plugin(ctx: ApiContext, request: Request, params: Params) -> Response:
    return await change_plugin(ctx, request, params["name"], "", 200)


async def change_plugin(
    ctx: ApiContext, request: Request, name: str, action: str, status: int
) -> Response:
    """One change on every node holding the plugin; every node must succeed.

    An enable (disable) skips the nodes where the plugin already is enabled (disabled),
    so a cluster left uneven is made even; where every node is, all are asked, and
    answer the engine's own error.
    """
    holders = await plugin_holders(ctx.cluster, name, Policy.ALL)
    targets = [engine for engine, _ in holders]
    if action in ("enable", "disable"):
        pending = [e for e, copy in holders if bool(copy.get("Enabled")) != (action == "enable")]
        targets = pending or targets
    body = await request.body()
    content_type = request.headers.get("Content-Type")
    headers = {"Content-Type": content_type} if content_type else {}
    query = query_args(request)
    await fan_out(
        targets,
        lambda e: e.call(
            request.method, plugin_path(name, action), params=query, data=body or None,
            headers=headers, timeout=CHANGE_TIMEOUT,
        ),
        Policy.ALL,
    )  # fmt: skip
    return Response(status, b"", [], None)
