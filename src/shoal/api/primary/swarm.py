"""Swarm-mode routes (`/swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`),
answered as an engine outside a swarm answers them.

Shoal manages classic-Swarm clusters, never a swarm-mode one. Clients and reset tools call
these routes anyway (docker-py's teardown calls `POST /swarm/leave?force=1`, accepting 503),
so they get the engine's own 503 texts rather than a 404 that reads as a broken API.
"""

from __future__ import annotations

from typing import Final

from shoal.api.http import Request, Response, error_response
from shoal.api.primary.context import ApiContext, Handler, Params

#: What dockerd answers when the node is not in a swarm at all (`swarm leave`).
NOT_IN_SWARM: Final = "This node is not part of a swarm"
#: What dockerd answers to every manager-only call when the node is not in a swarm.
NOT_A_MANAGER: Final = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
#: The object kinds only a swarm-mode manager serves.
KINDS: Final = ("nodes", "services", "tasks", "secrets", "configs")


async def leave(ctx: ApiContext, request: Request, params: Params) -> Response:
    await request.body()
    return error_response(503, NOT_IN_SWARM)


async def not_a_manager(ctx: ApiContext, request: Request, params: Params) -> Response:
    await request.body()
    return error_response(503, NOT_A_MANAGER)


async def cannot_join(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`swarm init`/`join` would turn the engines into a swarm-mode cluster: refused."""
    await request.body()
    return error_response(
        501, f"{request.method} {request.path}: swarm mode is not supported by shoal"
    )


def _routes() -> tuple[tuple[str, str, Handler], ...]:
    rows: list[tuple[str, str, Handler]] = [
        ("POST", "/swarm/leave", leave),
        ("POST", "/swarm/init", cannot_join),
        ("POST", "/swarm/join", cannot_join),
        ("GET", "/swarm", not_a_manager),
        ("GET", "/swarm/unlockkey", not_a_manager),
        ("POST", "/swarm/update", not_a_manager),
        ("POST", "/swarm/unlock", not_a_manager),
    ]
    for kind in KINDS:
        for method in ("GET", "POST", "DELETE"):
            rows.append((method, f"/{kind}", not_a_manager))
            rows.append((method, f"/{kind}/{{rest:.*}}", not_a_manager))
    return tuple(rows)


ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = _routes()
