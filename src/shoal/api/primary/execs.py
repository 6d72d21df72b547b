"""Exec routes: found through the container that owns the exec, then passed through."""

from __future__ import annotations

from typing import Any

from shoal.api.http import HTTPError, Request
from shoal.api.primary.context import ApiContext
from shoal.api.primary.proxy import forward, hijack, rewrite_target
from shoal.api.router import Router
from shoal.cluster.cluster import NotFound, Placed


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    def find_exec(exec_id: str) -> Placed:
        try:
            return cluster.find_exec(exec_id)
        except NotFound:
            raise HTTPError(404, f"No such exec instance: {exec_id}") from None

    async def start(request: Request, params: dict[str, str]) -> Any:
        placed = find_exec(params["id"])
        target = rewrite_target(request, request.path)
        if request.is_upgrade:
            return hijack(placed.engine, target)
        return await forward(placed.engine, request, target)

    async def passthrough(request: Request, params: dict[str, str]) -> Any:
        placed = find_exec(params["id"])
        return await forward(placed.engine, request, rewrite_target(request, request.path))

    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", passthrough)
    router.add("GET", "/exec/{id}/json", passthrough)
