"""Container routes other than list and create: inspected from the cache, everything else
passed to the engine that runs the container."""

from __future__ import annotations

from urllib.parse import urlencode

from shoal.api.http import Hijack, HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.container_list import public_bindings
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.encoding import dumps
from shoal.api.primary.fanout import Policy, fan_out, healthy_engines, merge_prune
from shoal.api.primary.filters import query_args
from shoal.api.primary.proxy import (
    container_path,
    find_healthy,
    forward,
    hijack,
    quietly,
    rewrite_target,
)
from shoal.api.validation import CONTAINER_UPDATE_BODY, EXEC_CREATE, read_body
from shoal.cluster.errors import EngineError


async def inspect_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    ref = params["name"]
    placed = find_healthy(ctx.cluster, ref)
    if request.flag("size"):
        target = rewrite_target(request, container_path(request, ref, placed.container.id))
        return await forward(placed.engine, request, target)
    # A container adopted moments ago may be known from its engine's list only.
    container = await placed.engine.inspected(placed.container)
    data = dict(container.inspect)
    data["Node"] = placed.engine.node_json()
    settings = data.get("NetworkSettings")
    if settings and settings.get("Ports"):
        settings = dict(settings)
        settings["Ports"] = {
            port: public_bindings(bindings, placed.engine) if bindings else bindings
            for port, bindings in settings["Ports"].items()
        }
        data["NetworkSettings"] = settings
    return Response(200, dumps(data) + b"\n", [])


async def start_container(ctx: ApiContext, request: Request, params: Params) -> Response:
    placed = ctx.cluster.find_container(params["name"])
    await request.body()
    query = query_args(request)
    try:
        await placed.engine.call(
            "POST", f"/containers/{placed.container.id}/start", params=query or None
        )
    except EngineError as exc:
        if exc.status != 304:
            raise
        return Response(304, b"", [], None)  # already started: not an error
    await quietly(lambda: placed.engine.refresh_container(placed.container.id))
    return Response(204, b"", [], None)


async def pass_through(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """A read (logs, top, stats, archive...) passed to the container's engine."""
    ref = params["name"]
    placed = find_healthy(ctx.cluster, ref)
    target = rewrite_target(request, container_path(request, ref, placed.container.id))
    return await forward(placed.engine, request, target)


async def pass_through_refresh(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """A change (stop, kill, rename...) passed on; the cached container is refreshed after."""
    ref = params["name"]
    placed = find_healthy(ctx.cluster, ref)
    engine, cid = placed.engine, placed.container.id
    target = rewrite_target(request, container_path(request, ref, cid))

    async def after() -> None:
        await engine.refresh_container(cid)

    return await forward(engine, request, target, after=after)


async def update_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """`docker update`: the body is type-checked like the engine's before it is passed on, and
    an unknown container is a 404 before the body is read, as in classic Swarm."""
    find_healthy(ctx.cluster, params["name"])
    await read_body(request, CONTAINER_UPDATE_BODY)
    return await pass_through_refresh(ctx, request, params)


async def rename_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Names are unique cluster-wide: the new one is held (as a create holds its own) until
    the engine has answered and the renamed container is cached again, so two renames, or
    a rename and a create, on two nodes never both get it."""
    placed = find_healthy(ctx.cluster, params["name"])
    new_name = request.arg("name") or ""
    if not new_name:
        return await pass_through_refresh(ctx, request, params)  # the engine's own 400
    with ctx.cluster.claim_name(new_name, placed.container.id):
        return await pass_through_refresh(ctx, request, params)


async def remove_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    ref = params["name"]
    if request.flag("link") and "/" in ref.strip("/"):
        return await remove_link(ctx, request, ref)
    placed = ctx.cluster.find_container(ref)
    engine, cid = placed.engine, placed.container.id
    target = rewrite_target(request, container_path(request, ref, cid))
    response = await forward(engine, request, target)
    if response.status < 300:
        engine.forget_container(cid)
    return response


async def remove_link(
    ctx: ApiContext, request: Request, ref: str
) -> Response | StreamResponse:
    """`DELETE /containers/{parent}/{alias}?link=1`: the link lives on the parent's engine,
    which resolves it by the parent's name (not its ID), so the path names the parent."""
    parent_ref, _, alias = ref.strip("/").rpartition("/")
    placed = ctx.cluster.find_container(parent_ref)
    engine, cid = placed.engine, placed.container.id
    target = rewrite_target(request, f"/containers{placed.container.name}/{alias}")

    async def after() -> None:
        await engine.refresh_container(cid)

    return await forward(engine, request, target, after=after)


async def attach_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse | Hijack:
    ref = params["name"]
    placed = find_healthy(ctx.cluster, ref)
    target = rewrite_target(request, container_path(request, ref, placed.container.id))
    if request.is_upgrade or request.path.endswith("/attach/ws"):
        return hijack(placed.engine, target)
    return await forward(placed.engine, request, target)


async def create_exec(ctx: ApiContext, request: Request, params: Params) -> Response:
    placed = ctx.cluster.find_container(params["name"])
    body = await read_body(request, EXEC_CREATE)
    if not body.get("Cmd"):
        raise HTTPError(400, "No exec command specified")
    created = await placed.engine.call("POST", f"/containers/{placed.container.id}/exec", body=body)
    ctx.cluster.record_exec(created["Id"], placed.container.id)
    return json_response(created, 201)


async def commit_container(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """`docker commit` on the container's node; the new image is then cached there."""
    placed = find_healthy(ctx.cluster, request.arg("container") or "")
    pairs = [
        (k, placed.container.id if k == "container" else v)
        for k, values in request.query.items()
        for v in values
    ]
    prefix = f"/v{request.api_version}" if request.api_version else ""
    engine = placed.engine
    return await forward(
        engine, request, f"{prefix}/commit?{urlencode(pairs)}", after=engine.refresh_images
    )


async def prune_containers(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker container prune` on every healthy node: deletions joined, space summed."""
    query = query_args(request)
    engines = healthy_engines(ctx.cluster)
    results = await fan_out(
        engines,
        lambda e: e.call("POST", "/containers/prune", params=query, timeout=None),
        Policy.ALL,
    )
    for engine in engines:
        await quietly(engine.refresh_containers)
    return json_response(merge_prune(results, "ContainersDeleted"))
