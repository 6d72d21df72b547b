"""The watchdog: containers that ask for it move off a failed node, and exist once.

Classic Swarm's watchdog tried each container once per disconnect and cleaned up the
stale copies only after the node was already back and healthy (its #1810/#1812). Here
a failed attempt is retried with backoff until the node returns, and the engine's
recovery path (`Engine.recover`) removes stale copies before the node turns Healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineState
from shoal.cluster.engine_cache import ListedContainer
from shoal.cluster.errors import ClusterError, EngineFailure
from shoal.cluster.index import Placed
from shoal.cluster.records import Container
from shoal.logs import fields
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.labels import (
    RESCHEDULE_ON_NODE_FAILURE,
    build_container_config,
    rules_from_config,
)
from shoal.telemetry import NO_TELEMETRY, WatchdogTelemetry

log = logging.getLogger(__name__)

#: Waits between attempts for containers that found no node; bounded (about 9 minutes).
RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 120.0, 300.0)
RESCHEDULE_ACTION = "container_reschedule"


def wants_reschedule(container: Container) -> bool:
    """The policy from the label or from an env entry of a container created elsewhere.

    A container known from its node's list only (the node failed before its inspect
    arrived) is not moved: its create body cannot be rebuilt from a list entry.
    """
    if isinstance(container, ListedContainer):
        return False
    config = container.inspect.get("Config") or {}
    return rules_from_config(config, "reschedule") == [RESCHEDULE_ON_NODE_FAILURE]


def plain_link(link: str) -> str:
    """Inspect's `/db:/web/alias` back to the create form `db:alias`."""
    target, sep, alias = link.partition(":")
    target = target.lstrip("/")
    return f"{target}:{alias.rsplit('/', 1)[-1]}" if sep else target


def recreate_config(container: Container) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The create body that makes this container again elsewhere, and networks to join after.

    Node-specific parts go: the hostname docker derived from the old ID, the ID alias,
    addresses the engine assigned. CpuShares is read back as a CPU count (the create
    path turns it into shares for the target's CPU count again). Labels, the swarm ID
    among them, are kept.
    """
    inspect = container.inspect
    short = container.id[:12]
    config: dict[str, Any] = copy.deepcopy(inspect.get("Config") or {})
    if config.get("Hostname") == short:
        config.pop("Hostname")
    host_config: dict[str, Any] = copy.deepcopy(inspect.get("HostConfig") or {})
    shares = int(host_config.get("CpuShares") or 0)
    if shares:
        host_config["CpuShares"] = shares * container.engine_cpus // 1024
    if host_config.get("Links"):
        host_config["Links"] = [plain_link(str(link)) for link in host_config["Links"]]
    config["HostConfig"] = host_config
    mode = str(host_config.get("NetworkMode") or "default")
    primary = "bridge" if mode == "default" else mode
    endpoints: dict[str, dict[str, Any]] = {}
    for net, ep in ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).items():
        entry: dict[str, Any] = {}
        ep = ep or {}
        if ep.get("IPAMConfig"):
            entry["IPAMConfig"] = ep["IPAMConfig"]
        aliases = [a for a in ep.get("Aliases") or [] if a != short]
        if aliases:
            entry["Aliases"] = aliases
        if ep.get("Links"):
            entry["Links"] = ep["Links"]
        endpoints[net] = entry
    # Engines before API 1.44 take one network at create; the others are joined after.
    first = primary if primary in endpoints else next(iter(endpoints), None)
    if first is not None:
        config["NetworkingConfig"] = {"EndpointsConfig": {first: endpoints.pop(first)}}
    return build_container_config(config, validate=False), endpoints


@dataclass(slots=True)
class Failure:
    """One node failure being handled; `busy` while a create may be in flight."""

    engine: Engine
    task: asyncio.Task[None] | None = None
    busy: bool = False


class Watchdog:
    """Reacts to engine state changes of its cluster; run it on the primary only."""

    def __init__(
        self, cluster: Cluster, *, retry_delays: Sequence[float] = RETRY_DELAYS,
        telemetry: WatchdogTelemetry = NO_TELEMETRY,
    ) -> None:
        self.cluster = cluster
        self.telemetry = telemetry
        self.retry_delays = tuple(retry_delays)
        self._failures: dict[str, Failure] = {}
        self._lock = asyncio.Lock()
        self._running = False

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self.cluster.add_state_listener(self._on_state)
        # A manager that just became primary takes over nodes that failed before.
        for engine in self.cluster.all_engines():
            if engine.state is EngineState.UNHEALTHY:
                self._on_state(engine, "engine_disconnect")

    async def stop(self) -> None:
        """Stop listening and cancel every reschedule in progress."""
        if self._running:
            self._running = False
            self.cluster.remove_state_listener(self._on_state)
        tasks = [f.task for f in self._failures.values() if f.task is not None]
        self._failures.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def settle(self) -> None:
        """Wait until no node failure is being handled (for tests and orderly shutdown)."""
        while True:
            tasks = [f.task for f in self._failures.values() if f.task is not None]
            if not tasks:
                return
            await asyncio.wait(tasks)

    # -- events --------------------------------------------------------------------
    def _on_state(self, engine: Engine, action: str) -> None:
        entry = engine.address.entry
        current = self._failures.get(entry)
        if action == "engine_disconnect":
            if current is not None and current.task is not None and not current.task.done():
                return
            failure = Failure(engine)
            failure.task = asyncio.create_task(
                self._handle(failure), name=f"watchdog {entry}"
            )
            self._failures[entry] = failure
        elif action in ("engine_reconnect", "engine_connect") and current is not None:
            # Waiting for a retry: stop now. Mid-create: the task sees the node is back.
            if current.task is not None and not current.busy:
                current.task.cancel()

    async def _settled_down(self, engine: Engine) -> bool:
        """Still down, once a recovery in progress (which may yet fail) has ended."""
        if engine.recovering:
            await engine.recover()
        return self._still_down(engine)

    def _still_down(self, engine: Engine) -> bool:
        current = self.cluster.engine_at(engine.address.entry)
        if current is not engine:
            return current is None  # removed from discovery and not added back
        return engine.state is EngineState.UNHEALTHY and not engine.recovering

    # -- rescheduling ----------------------------------------------------------------
    async def _handle(self, failure: Failure) -> None:
        engine = failure.engine
        try:
            todo = [c for c in engine.containers.values() if wants_reschedule(c)]
            delays = iter(self.retry_delays)
            while todo and await self._settled_down(engine):
                async with self._lock:
                    failure.busy = True
                    try:
                        todo = [c for c in todo if not await self._attempt(engine, c)]
                    finally:
                        failure.busy = False
                if not todo or not await self._settled_down(engine):
                    return
                delay = next(delays, None)
                if delay is None:
                    log.error(
                        "Giving up rescheduling %d container(s) from %s",
                        len(todo),
                        engine.name,
                        extra=engine.log_fields,
                    )
                    return
                log.info(
                    "Retrying to reschedule %d container(s) from %s in %gs",
                    len(todo),
                    engine.name,
                    delay,
                    extra=engine.log_fields,
                )
                await asyncio.sleep(delay)
                self.telemetry.watchdog_move("retried", len(todo))
        except Exception:  # a bug must not end the watch silently
            log.exception("watchdog failed handling %s", engine.name, extra=engine.log_fields)
        finally:
            if self._failures.get(engine.address.entry) is failure:
                del self._failures[engine.address.entry]

    async def _attempt(self, engine: Engine, container: Container) -> bool:
        """One try at moving one container; True when there is nothing left to do."""
        if not self._still_down(engine):
            return False
        current = self.cluster.engine_at(engine.address.entry) is engine
        if current and container.id not in engine.containers:
            return True  # removed meanwhile
        name = container.name.lstrip("/")
        if not name:
            log.error("Container %s has no name, cannot reschedule it", container.id,
                      extra=fields(container=container.id, node=engine.name))
            return True
        sid = container.swarm_id
        if sid and any(
            p.engine is not engine and p.engine.healthy
            for p in self.cluster.copies(sid)
        ):
            # Moved already (by a former primary): this copy is stale, its name not ours.
            engine.forget_container(container.id)
            return True
        config, networks = recreate_config(container)
        # The old copy stays cached (and keeps the name against every other create or
        # rename) until the new copy is; the create may take the name for the same swarm ID.
        self.telemetry.watchdog_move("started")
        try:
            placed = await self.cluster.create_container(config, name, None)
        except (SchedulerError, ClusterError) as exc:
            self.telemetry.watchdog_move("failed")
            log.error("Failed to reschedule container %s: %s", container.id, exc,
                      extra=fields(container=container.id, node=engine.name))
            self._restore(engine, container)
            return False
        except Exception:
            self.telemetry.watchdog_move("failed")
            log.exception("Failed to reschedule container %s", container.id,
                          extra=fields(container=container.id, node=engine.name))
            self._restore(engine, container)
            return False
        if not self._still_down(engine):
            # The node came back during the create: its copy stays, the new one goes.
            log.warning(
                "Engine %s came back while container %s was rescheduled; removing %s",
                engine.name,
                container.id,
                placed.container.id,
                extra=fields(container=container.id, node=engine.name, addr=engine.addr),
            )
            await self._remove(placed)
            self._restore(engine, container)
            self.telemetry.watchdog_move("failed")
            return False
        engine.forget_container(container.id)
        await self._finish_move(engine, container, placed, networks)
        self.telemetry.watchdog_move("succeeded")
        return True

    async def _finish_move(
        self,
        engine: Engine,
        container: Container,
        placed: Placed,
        networks: dict[str, dict[str, Any]],
    ) -> None:
        """Announce the move, reconnect the new container's networks, start it if it ran."""
        log.info(
            "Rescheduled container %s from %s to %s as %s",
            container.id,
            engine.name,
            placed.engine.name,
            placed.container.id,
            extra=fields(container=placed.container.id, node=placed.engine.name,
                         old_container=container.id, old_node=engine.name),
        )
        self.cluster.publish_swarm_event(
            placed.engine,
            RESCHEDULE_ACTION,
            actor_id=placed.container.id,
            attributes={
                "name": container.name.lstrip("/"),
                "old_id": container.id,
                "old_node": engine.name,
                "old_node.id": engine.id,
            },
        )
        await self._connect(placed, networks)
        if container.running:
            log.info(
                "Container %s was running, starting container %s",
                container.id,
                placed.container.id,
                extra=fields(container=placed.container.id, node=placed.engine.name),
            )
            await self._start(placed)

    def _restore(self, engine: Engine, container: Container) -> None:
        """A container that could not move stays listed on its node (as `Host Down`), even
        if a refresh dropped it meanwhile."""
        if (
            self.cluster.engine_at(engine.address.entry) is engine
            and engine.state is EngineState.UNHEALTHY
            and container.id not in engine.containers
        ):
            engine.restore_container(container)

    async def _connect(self, placed: Placed, networks: dict[str, dict[str, Any]]) -> None:
        cid = placed.container.id
        for net, endpoint in networks.items():
            try:
                await placed.engine.call(
                    "POST",
                    f"/networks/{net}/connect",
                    body={"Container": cid, "EndpointConfig": endpoint},
                )
            except EngineFailure as exc:
                log.error("Failed to connect rescheduled container %s to %s: %s", cid, net, exc,
                          extra=fields(container=cid, node=placed.engine.name, network=net))

    async def _start(self, placed: Placed) -> None:
        cid = placed.container.id
        try:
            await placed.engine.call("POST", f"/containers/{cid}/start")
            await placed.engine.refresh_container(cid)
        except EngineFailure as exc:
            log.error("Failed to start rescheduled container %s: %s", cid, exc,
                      extra=fields(container=cid, node=placed.engine.name))

    async def _remove(self, placed: Placed) -> None:
        cid = placed.container.id
        try:
            await placed.engine.call(
                "DELETE", f"/containers/{cid}", params={"force": "1", "v": "1"}
            )
        except EngineFailure as exc:
            log.error("Failed to remove duplicate container %s: %s", cid, exc,
                      extra=fields(container=cid, node=placed.engine.name))
            return
        placed.engine.forget_container(cid)
        self.telemetry.duplicate_removed()
