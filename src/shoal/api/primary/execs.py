"""Exec routes: found through the container that owns the exec, then passed through."""

from __future__ import annotations

from shoal.api.http import Hijack, Request, Response, StreamResponse
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.proxy import forward, hijack, rewrite_target


async def start_exec(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse | Hijack:
    placed = ctx.cluster.find_exec(params["id"])
    target = rewrite_target(request, request.path)
    if request.is_upgrade:
        return hijack(placed.engine, target)
    return await forward(placed.engine, request, target)


async def exec_pass_through(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    placed = ctx.cluster.find_exec(params["id"])
    return await forward(placed.engine, request, rewrite_target(request, request.path))
