"""One call sent to several engines at once, and the rule that turns their answers into one.

The policy is explicit at every call site:

- `Policy.ALL`: every engine must succeed (prunes of containers, images and build caches,
  tags, image removals, `system df`, volumes made on several nodes).
- `Policy.ANY`: the call succeeds when at least one engine answered (network and volume
  prunes, whose deletions are per node and worth reporting even if a node failed).

Failures read one way everywhere: a lone engine's error is passed on as the engine said
it; several are joined one per line as `node: message`, with their common status, or 500
when they disagree or some engines succeeded (the cluster is then left uneven).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from shoal.api.http import Request
from shoal.api.primary.filters import parse_filters
from shoal.api.primary.proxy import quietly
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineError
from shoal.scheduler.errors import NO_HEALTHY_NODE, SchedulerError

T = TypeVar("T")


class Policy(enum.Enum):
    ALL = "all"
    ANY = "any"


def healthy_engines(cluster: Cluster) -> list[Engine]:
    """The healthy engines, for a call that needs at least one."""
    engines = cluster.healthy_engines()
    if not engines:
        raise SchedulerError(NO_HEALTHY_NODE)
    return engines


def by_node_name(engines: Sequence[Engine]) -> list[Engine]:
    """The engines in node-name order: for choices that must not depend on discovery order
    (which engine a `swarm init` goes to, whose copy of a plugin is shown)."""
    return sorted(engines, key=lambda e: (e.name, e.addr))


async def fan_out(
    engines: Sequence[Engine], call: Callable[[Engine], Awaitable[T]], policy: Policy
) -> list[tuple[Engine, T]]:
    """`call` on every engine at once; the (engine, answer) pairs of those that answered."""
    results = await asyncio.gather(*(call(e) for e in engines), return_exceptions=True)
    answered: list[tuple[Engine, T]] = []
    failed: list[tuple[Engine, Exception]] = []
    for engine, result in zip(engines, results, strict=True):
        if isinstance(result, Exception):
            failed.append((engine, result))
        elif isinstance(result, BaseException):
            raise result
        else:
            answered.append((engine, result))
    if failed and (policy is Policy.ALL or not answered):
        raise joined_failure(failed, partial=bool(answered))
    return answered


async def prune_each(
    cluster: Cluster, request: Request, kind: str, refresh: Callable[[Engine], Awaitable[object]]
) -> dict[str, Any]:
    """`docker network prune` / `docker volume prune` (`kind`): on every healthy node, any
    of which may fail; each engine's cache refreshed after its own prune."""
    raw = request.arg("filters")
    parse_filters(raw)  # refuse malformed filters here, not once per engine
    query = {"filters": raw or "{}"}

    async def prune_one(engine: Engine) -> Any:
        result = await engine.call("POST", f"/{kind}/prune", params=query)
        await quietly(lambda: refresh(engine))
        return result

    results = await fan_out(cluster.healthy_engines(), prune_one, Policy.ANY)
    return merge_prune(results, f"{kind.capitalize()}Deleted", per_node=True)


def joined_failure(failed: Sequence[tuple[Engine, Exception]], *, partial: bool) -> Exception:
    """The one error for several failed engines (see the module's docstring)."""
    if len(failed) == 1 and not partial:
        return failed[0][1]
    statuses = {exc.status if isinstance(exc, EngineError) else 500 for _, exc in failed}
    status = statuses.pop() if len(statuses) == 1 and not partial else 500
    return EngineError(status, "\n".join(f"{e.name}: {message_of(exc)}" for e, exc in failed))


def message_of(exc: Exception) -> str:
    return exc.message if isinstance(exc, EngineError) else str(exc)


def merge_prune(
    results: Sequence[tuple[Engine, Any]], key: str, *, per_node: bool = False
) -> dict[str, Any]:
    """Prune answers of several engines as one: the deleted lists joined, space summed.

    With `per_node`, each deleted name reads `node/name` (networks and volumes are local).
    """
    deleted: list[Any] = []
    space = 0
    for engine, result in results:
        items = (result or {}).get(key) or []
        if per_node:
            items = [f"{engine.name}/{i}" for i in items]
        deleted.extend(items)
        space += int((result or {}).get("SpaceReclaimed") or 0)
    return {key: deleted or None, "SpaceReclaimed": space}
