"""Swarm-mode routes (`/swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`):
passed through to the engine that is a swarm-mode manager, if one is.

Shoal manages a classic-Swarm cluster; it never makes its engines a swarm-mode cluster
on its own. A client may still make one engine a swarm manager through it (docker-py's
tests `swarm init` to create overlay networks): `POST /swarm/init` goes to one engine
chosen by node name, and from then on every swarm-mode call goes to that engine until
it leaves. With no manager, these routes answer as an engine outside a swarm (503), so
reset tools' `swarm leave --force` still succeeds. `swarm join` answers 501 (see README).
"""

from __future__ import annotations

from typing import Final

from shoal.api.http import Request, Response, StreamResponse, error_response
from shoal.api.primary.context import ApiContext, Handler, Params
from shoal.api.primary.fanout import by_node_name, healthy_engines
from shoal.api.primary.proxy import forward, quietly, rewrite_target
from shoal.cluster.engine import Engine

#: What dockerd answers when the node is not in a swarm at all (`swarm leave`).
NOT_IN_SWARM: Final = "This node is not part of a swarm"
#: What dockerd answers to every manager-only call when the node is not in a swarm.
NOT_A_MANAGER: Final = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
#: The object kinds only a swarm-mode manager serves.
KINDS: Final = ("nodes", "services", "tasks", "secrets", "configs")


async def init(ctx: ApiContext, request: Request, params: Params) -> Response | StreamResponse:
    """To the manager if there is one (which answers that it is already in a swarm), else
    to the first healthy engine by node name."""
    engine = await ctx.swarm_mode.manager_engine(ctx.cluster)
    if engine is None:
        engine = by_node_name(healthy_engines(ctx.cluster))[0]
    return await on_engine(ctx, request, engine, changes_swarm=True)


async def leave(ctx: ApiContext, request: Request, params: Params) -> Response | StreamResponse:
    engine = await ctx.swarm_mode.manager_engine(ctx.cluster)
    if engine is None:
        await request.body()
        return error_response(503, NOT_IN_SWARM)
    return await on_engine(ctx, request, engine, changes_swarm=True)


async def on_manager(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    """Any other swarm-mode call: to the manager, or the 503 of an engine outside a swarm."""
    engine = await ctx.swarm_mode.manager_engine(ctx.cluster)
    if engine is None:
        await request.body()
        return error_response(503, NOT_A_MANAGER)
    return await on_engine(ctx, request, engine, changes_swarm=False)


async def cannot_join(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`swarm join` names no node: which engine should join is not shoal's to guess."""
    await request.body()
    return error_response(
        501, f"{request.method} {request.path}: joining a swarm is not supported by shoal"
    )


async def on_engine(
    ctx: ApiContext, request: Request, engine: Engine, *, changes_swarm: bool
) -> Response | StreamResponse:
    """The call passed through to `engine`. After an init or leave, the manager is asked
    for again and the engine's networks are read again (a swarm adds `ingress`, a leave
    takes the swarm's networks away), so the next call through shoal sees the change."""

    async def after() -> None:
        ctx.swarm_mode.changed()
        await quietly(engine.refresh_networks)

    return await forward(
        engine, request, rewrite_target(request, request.path),
        after=after if changes_swarm else None,
    )  # fmt: skip


def _routes() -> tuple[tuple[str, str, Handler], ...]:
    rows: list[tuple[str, str, Handler]] = [
        ("POST", "/swarm/leave", leave),
        ("POST", "/swarm/init", init),
        ("POST", "/swarm/join", cannot_join),
        ("GET", "/swarm", on_manager),
        ("GET", "/swarm/unlockkey", on_manager),
        ("POST", "/swarm/update", on_manager),
        ("POST", "/swarm/unlock", on_manager),
    ]
    for kind in KINDS:
        for method in ("GET", "POST", "DELETE"):
            rows.append((method, f"/{kind}", on_manager))
            rows.append((method, f"/{kind}/{{rest:.*}}", on_manager))
    return tuple(rows)


ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = _routes()
