"""The cluster: its engines, the indexes that resolve names, and scheduled creation.

Engines report every cache change here (`container_changed`), so lookups by ID and
by name are dictionary reads, never a walk over every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.cluster.client import (
    EngineAddress,
    EngineClient,
    raise_open_files_limit,
)
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.engine_cache import InspectQueue
from shoal.cluster.errors import (
    Conflict,
    NotFound,
)
from shoal.cluster.events import EventBus
from shoal.cluster.index import ContainerIndex, Placed
from shoal.cluster.names import NameReservations, check_free, name_key
from shoal.cluster.nodes import NodeViews
from shoal.cluster.placement import (
    Created,
    PendingCreate,
    create_on_first,
    split_image,
    with_affinities,
)
from shoal.cluster.records import SWARM_ID_LABEL, Container, normalize_ref
from shoal.cluster.resources import pin_to_local_resources
from shoal.cluster.views import ReadViews
from shoal.discovery.base import Discovery, DiscoveryError
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.node import Node, NodeContainer
from shoal.scheduler.scheduler import Scheduler

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    """All engines, kept current by discovery, and the cluster-wide operations on them."""

    settings: EngineSettings
    scheduler: Scheduler
    bus: EventBus
    ssl_context: ssl.SSLContext | None = None
    create_retry: int = 0
    discovery_error: str = ""
    #: Bumped whenever an engine joins, leaves or changes health: keys derived caches.
    health_epoch: int = 0
    #: What `/info` and the container list answer from; told of every cache change.
    views: ReadViews = field(default_factory=ReadViews)
    #: discovery entry -> engine.
    _engines: dict[str, Engine] = field(default_factory=dict)
    _index: ContainerIndex = field(default_factory=ContainerIndex)
    #: Called with (engine, action) on engine_connect/_disconnect/_reconnect (the watchdog).
    _state_listeners: list[Callable[[Engine, str], None]] = field(default_factory=list)
    _pending: dict[str, PendingCreate] = field(default_factory=dict)
    #: Names renames in flight are setting (creates hold theirs in `_pending`).
    names: NameReservations = field(default_factory=NameReservations)
    #: exec ID -> container ID, for the `/exec/{id}` routes.
    _execs: dict[str, str] = field(default_factory=dict)
    _views: NodeViews = field(default_factory=NodeViews)
    _schedule_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Background inspects in flight, cluster-wide (adoption, reconciliation).
    _inspect_slots: InspectQueue = field(default_factory=InspectQueue)
    #: daemon ID -> engines that were validated with it (checked again on use: an ID
    #: can change), so validating N engines is not N x N comparisons.
    _by_daemon: dict[str, list[Engine]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- discovery ----------------------------------------------------------------
    def watch(self, discovery: Discovery) -> None:
        raise_open_files_limit()
        task = asyncio.create_task(self._watch(discovery), name="discovery watch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, discovery: Discovery) -> None:
        async for entries in discovery.watch():
            if isinstance(entries, DiscoveryError):
                self.discovery_error = str(entries)
                log.error("Discovery error: %s", entries)
                continue
            self.discovery_error = ""
            await self.set_entries(entries)

    async def set_entries(self, entries: Sequence[str]) -> None:
        """Diff a discovery batch against the engines we have: gone ones stop, new ones start."""
        wanted = dict.fromkeys(entries)
        for entry in [e for e in self._engines if e not in wanted]:
            await self.remove_engine(entry)
        for entry in wanted:
            if entry not in self._engines:
                self.add_engine(entry)

    def add_engine(self, entry: str) -> Engine | None:
        try:
            address = EngineAddress.parse(entry)
        except ValueError as exc:
            log.error("%s", exc)
            return None
        client = EngineClient(address, self.ssl_context)
        engine = Engine(address, client, self.settings, self, inspect_slots=self._inspect_slots)
        self._engines[entry] = engine
        engine.start()
        return engine

    async def inspects_done(self) -> None:
        """Until every healthy engine's containers carry their full inspect: adoption
        caches list entries first, and scheduling needs reservations from inspects."""
        waiting = [e.inspects_done() for e in self._engines.values() if e.listed and e.healthy]
        if waiting:
            await asyncio.gather(*waiting)

    async def adoption_settled(self) -> None:
        """Until the first adoption is over: every container of it inspected."""
        await self._inspect_slots.settled.wait()

    async def remove_engine(self, entry: str) -> None:
        engine = self._engines.pop(entry, None)
        if engine is None:
            return
        same = self._by_daemon.get(engine.specs.daemon_id)
        if same is not None and engine in same:
            same.remove(engine)
            if not same:
                del self._by_daemon[engine.specs.daemon_id]
        self.health_epoch += 1
        was_healthy = engine.healthy
        await engine.stop()
        for cid in list(engine.containers):
            self._index.remove(engine, engine.containers[cid])
        self.views.engine_removed(engine)
        if was_healthy:
            self._publish_swarm_event(engine, "engine_disconnect")
            self._notify_state(engine, "engine_disconnect")
        log.info("Removed Engine %s", engine.name, extra=engine.log_fields)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(e.stop() for e in self._engines.values()))
        self.bus.close()

    # -- engine listener ----------------------------------------------------------
    def engine_validated(self, engine: Engine) -> str | None:
        daemon_id = engine.specs.daemon_id
        same = [
            e for e in self._by_daemon.get(daemon_id, ())
            if e.specs.daemon_id == daemon_id and self._engines.get(e.address.entry) is e
        ]
        if engine not in same:
            same.append(engine)
        self._by_daemon[daemon_id] = same
        for other in same:
            if other is engine:
                continue
            if other.state is EngineState.PENDING:
                continue
            log.error(
                "ID duplicated. %s shared by %s and %s", engine.id, other.addr, engine.addr,
                extra=engine.log_fields,
            )
            return (
                f"ID duplicated. {engine.specs.daemon_id} shared by this node {engine.addr} "
                f"and another node {other.addr}"
            )
        return None

    def engine_state_changed(self, engine: Engine, action: str) -> None:
        self.health_epoch += 1
        self._touch(engine)
        self._publish_swarm_event(engine, action)
        self._notify_state(engine, action)

    def _notify_state(self, engine: Engine, action: str) -> None:
        for listener in list(self._state_listeners):
            try:
                listener(engine, action)
            except Exception:  # one broken listener must not stop the engine's loop
                log.exception("engine state listener failed on %s", action,
                              extra=engine.log_fields)

    def duplicate_copies(
        self, engine: Engine, listing: list[dict[str, Any]], *, newer_only: bool
    ) -> list[str]:
        """IDs in an engine's listing whose swarm ID a container on another engine has.

        A returning engine's copy gives way to one on a healthy engine (a copy on a
        node that is down too is no replacement). `newer_only` (first validation, where
        either side may be the stale one) keeps a local copy unless the other is newer.
        """
        stale: list[str] = []
        for item in listing:
            sid = (item.get("Labels") or {}).get(SWARM_ID_LABEL)
            if not sid:
                continue
            created = float(item.get("Created") or 0)
            for other in self._index.copies(sid):
                if other.engine is engine or other.container.id == item.get("Id"):
                    continue
                if newer_only:
                    if int(other.container.created) > created:
                        stale.append(str(item["Id"]))
                        break
                elif other.engine.healthy:
                    stale.append(str(item["Id"]))
                    break
        return stale

    def container_changed(
        self, engine: Engine, old: Container | None, new: Container | None
    ) -> None:
        self._views.container_changed(engine, old, new)
        if old is not None:
            self._index.remove(engine, old)
        if new is not None:
            self._index.add(Placed(engine, new))
        self.views.container_changed(engine, old, new)

    def engine_event(self, engine: Engine, event: dict[str, Any]) -> None:
        self.bus.publish(decorate_event(event, engine))

    def _touch(self, engine: Engine) -> None:
        self._views.touch(engine)
        self.views.touch(engine)

    def engine_touched(self, engine: Engine, field: str) -> None:
        """An engine field changed: `/info` and the scheduler's views re-read that engine
        (only)."""
        self.views.touch(engine)
        self._views.engine_changed(engine, field)

    def is_member(self, engine: Engine) -> bool:
        """ENGINE is (still) one of this cluster's engines."""
        return self._engines.get(engine.address.entry) is engine

    def images_changed(self, engine: Engine) -> None:
        """The engine's image list was refreshed: rebuild its scheduler view (image affinity)."""
        self._touch(engine)

    def _publish_swarm_event(self, engine: Engine, action: str) -> None:
        self.publish_swarm_event(engine, action)

    def publish_swarm_event(
        self,
        engine: Engine,
        action: str,
        *,
        actor_id: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        """A `Type: swarm` event about ENGINE (the actor defaults to the engine itself)."""
        now = time.time()
        actor = actor_id if actor_id is not None else engine.id
        event = {
            "Type": "swarm",
            "Action": action,
            "status": action,
            "id": actor,
            "from": "swarm",
            "Actor": {"ID": actor, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": int(now),
            "timeNano": int(now * 1e9),
        }
        self.bus.publish(decorate_event(event, engine))

    # -- reads ----------------------------------------------------------------------
    def all_engines(self) -> list[Engine]:
        """Every engine discovery knows, whatever its state."""
        return list(self._engines.values())

    def active_engines(self) -> list[Engine]:
        """Validated engines, healthy or not (pending ones have nothing cached)."""
        return [e for e in self._engines.values() if e.state is not EngineState.PENDING]

    def healthy_engines(self) -> list[Engine]:
        return [e for e in self._engines.values() if e.healthy]

    def containers(self) -> Iterator[Placed]:
        """Every container once: copies hidden behind another copy of their swarm ID are not."""
        return self._index.containers()

    def hidden_copies(self) -> Iterator[Placed]:
        """Stale copies of a moved container, cached twice until its old node is cleaned."""
        return self._index.hidden()

    def copies(self, swarm_id: str) -> list[Placed]:
        """Every cached copy of a swarm ID (more than one only around a node failure)."""
        return self._index.copies(swarm_id)

    def find_container(self, ref: str) -> Placed:
        """Classic Swarm's resolution order (cluster/swarm/cluster.go, `Container`): ID,
        swarm ID, name, then an ID prefix."""
        return self._index.find(ref)

    def engine_at(self, entry: str) -> Engine | None:
        """The engine discovery listed as `entry`, if it is still in the cluster."""
        return self._engines.get(entry)

    def add_state_listener(self, listener: Callable[[Engine, str], None]) -> None:
        """`listener(engine, action)` on engine_connect, _disconnect and _reconnect."""
        self._state_listeners.append(listener)

    def remove_state_listener(self, listener: Callable[[Engine, str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._state_listeners.remove(listener)

    def place(self, config: dict[str, Any]) -> list[Engine]:
        """The engines the scheduler ranks for `config`, best first (SchedulerError if none)."""
        return [self.engine_for_node(n) for n in self.scheduler.select(config, self.node_views())]

    def engine_by_name(self, name: str) -> Engine | None:
        for engine in self._engines.values():
            if engine.specs.name == name or engine.id == name or engine.specs.daemon_id == name:
                return engine
        return None

    def record_exec(self, exec_id: str, cid: str) -> None:
        """Remember which container an exec made through shoal runs in."""
        self._execs[exec_id] = cid

    def find_exec(self, exec_id: str) -> Placed:
        """The container an exec runs in: from creates seen here, else the inspects' ExecIDs."""
        cid = self._execs.get(exec_id)
        placed = self._index.by_id(cid) if cid is not None else None
        if placed is not None:
            return placed
        for placed in self._index.all():
            if exec_id in placed.container.exec_ids:
                return placed
        raise NotFound(f"No such exec instance: {exec_id}")

    def name_taken(self, name: str) -> Container | None:
        return self._index.name_taken(name)

    def check_name(self, name: str, *, cid: str = "", swarm_id: str = "") -> None:
        """Conflict unless NAME is free in the whole cluster for container CID (or for a
        new copy of SWARM_ID): cached on no engine, set by no create or rename in flight."""
        key = name_key(name)
        check_free(
            key,
            self._index.named(key),
            creating=key in self._pending,
            renaming=self.names.holder(key),
            cid=cid,
            swarm_id=swarm_id,
        )

    @contextlib.contextmanager
    def claim_name(self, name: str, cid: str) -> Iterator[None]:
        """Hold NAME for a rename of CID until the block ends (Conflict if it is taken).

        The check and the hold happen with no await between them, as a create's do, so
        a create and a rename (or two renames) can never both pass for one name.
        """
        self.check_name(name, cid=cid)
        with self.names.hold(name, cid):
            yield

    # -- scheduling -----------------------------------------------------------------
    def node_views(self) -> list[Node]:
        """One scheduler view per active engine, pending creates included; only the
        engines that changed since the last call are rebuilt."""
        pending: dict[Engine, list[NodeContainer]] = {}
        for p in self._pending.values():
            pending.setdefault(p.engine, []).append(
                NodeContainer.pending(p.config, p.display_name)
            )
        return self._views.nodes(self._engines.values(), pending)

    def engine_by_id(self, engine_id: str) -> Engine | None:
        """The engine with classic Swarm's engine ID (`daemon ID|address`)."""
        engine = self._views.engine(engine_id)
        if engine is not None and engine.id == engine_id and (
            self._engines.get(engine.address.entry) is engine
        ):
            return engine
        # Not active, or changed since the views were last read: ask every engine.
        for engine in self._engines.values():
            if engine.id == engine_id:
                return engine
        return None

    def engine_for_node(self, node: Node) -> Engine:
        engine = self.engine_by_id(node.id)
        if engine is None:
            raise NotFound(f"No such node: {node.id}")
        return engine

    async def create_container(
        self,
        config: dict[str, Any],
        name: str | None,
        auth: str | None,
        *,
        affinities: Sequence[str] = (),
    ) -> Created:
        """Schedule, then create on the first ranked node, trying the next on failure.

        `affinities` steer the scheduler only: they never reach the engine, so the created
        container does not carry them."""
        await self.inspects_done()
        async with self._schedule_lock:
            if name:
                given = config.get("Labels")
                swarm_id = given.get(SWARM_ID_LABEL) if isinstance(given, dict) else None
                self.check_name(name, swarm_id=str(swarm_id or ""))
            labels = config.setdefault("Labels", None) or {}
            config["Labels"] = labels
            if not labels.get(SWARM_ID_LABEL):
                labels[SWARM_ID_LABEL] = self._new_swarm_id()
            views = self.node_views()
            # Local networks and volumes pull the container to their node.
            pin_to_local_resources(config, self._views.active())
            scheduled = with_affinities(config, affinities)
            attempts = max(1 + self.create_retry, 1)
            ranked = self.scheduler.select(scheduled, views, limit=attempts)
            if len(ranked) < attempts:
                # Retries go to more nodes: those only soft rules ranked out come next.
                rest = [n for n in views if all(n.id != r.id for r in ranked)]
                with contextlib.suppress(SchedulerError):
                    ranked += self.scheduler.select(
                        scheduled, rest, limit=attempts - len(ranked)
                    )
            engines = [self.engine_for_node(n) for n in ranked]
            key = name.lstrip("/") if name else "\0" + labels[SWARM_ID_LABEL]
            self._pending[key] = PendingCreate(
                key, engines[0], config, labels[SWARM_ID_LABEL]
            )
        try:
            tried = engines[:attempts] or engines[:1]
            return await create_on_first(tried, self._pending[key], config, name, auth)
        finally:
            self._pending.pop(key, None)

    def _new_swarm_id(self) -> str:
        while True:
            candidate = secrets.token_hex(32)
            if not self._index.copies(candidate):
                return candidate


def decorate_event(event: dict[str, Any], engine: Engine) -> dict[str, Any]:
    """Add the node to an event the way classic Swarm does (cluster/event.go)."""
    out = dict(event)
    node = {"Name": engine.name, "Id": engine.id, "Addr": engine.addr, "Ip": engine.ip}
    if "from" in out:
        out["from"] = f"{out['from']} node:{engine.name}"
    actor = dict(out.get("Actor") or {})
    attributes = dict(actor.get("Attributes") or {})
    attributes.update(
        {
            "node.name": engine.name,
            "node.id": engine.id,
            "node.addr": engine.addr,
            "node.ip": engine.ip,
        }
    )
    actor["Attributes"] = attributes
    out["Actor"] = actor
    out["node"] = node
    return out


__all__ = [
    "Cluster",
    "Conflict",
    "Created",
    "NotFound",
    "PendingCreate",
    "Placed",
    "normalize_ref",
    "split_image",
    "with_affinities",
]
