"""Which engine, if any, is a swarm-mode manager: the engine swarm-mode calls go to.

Shoal never builds a swarm-mode cluster itself, but a client may make one engine a
swarm manager through it (`swarm init`, passed on). The manager is read from the
engines' own `/info` (`Swarm.LocalNodeState` and `ControlAvailable`): asked again when an
init or leave passes through shoal, and otherwise at most every `MAX_AGE` seconds, so a
swarm made or left on an engine directly is seen soon after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from shoal.api.primary.fanout import Policy, by_node_name, fan_out
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineFailure

#: Seconds a known answer (manager or none) is trusted before the engines are asked again.
MAX_AGE: Final = 5.0


def is_manager(info: Any) -> bool:
    """An engine's `/info` says it is an active swarm-mode manager."""
    swarm = info.get("Swarm") if isinstance(info, dict) else None
    if not isinstance(swarm, dict):
        return False
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


@dataclass
class SwarmMode:
    """The swarm-mode manager among the engines, as last read from their `/info`."""

    clock: Callable[[], float] = time.monotonic
    manager: Engine | None = None
    checked: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def manager_engine(self, cluster: Cluster) -> Engine | None:
        """The healthy swarm-mode manager, or None; the engines are asked if the last
        answer is older than `MAX_AGE` (or was dropped by `changed`)."""
        async with self.lock:
            if self.clock() - self.checked > MAX_AGE:
                await self._scan(cluster)
        manager = self.manager
        if manager is None or manager not in cluster.healthy_engines():
            return None
        return manager

    def changed(self) -> None:
        """A call that may make or end a swarm passed through: ask the engines next time."""
        self.checked = float("-inf")

    async def _scan(self, cluster: Cluster) -> None:
        async def info(engine: Engine) -> Any:
            try:
                return await engine.get("/info")
            except EngineFailure:
                return None  # an engine that cannot answer is no manager to send calls to

        engines = by_node_name(cluster.healthy_engines())
        answers = dict(await fan_out(engines, info, Policy.ALL))
        self.manager = next((e for e in engines if is_manager(answers.get(e))), None)
        self.checked = self.clock()
