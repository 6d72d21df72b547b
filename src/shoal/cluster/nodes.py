"""The scheduler's views of the cluster's engines, kept current one engine at a time.

A create must not rebuild a thousand views to place one container: each engine's
`Node` is rebuilt only when that engine reported a change (`touch`), from per-container
parts made when each container changed (so a rebuild reads one new inspect, not all),
the list of views is kept between creates, and a pending create is overlaid on its one
node. Engines tell every change of their state, specs and failure count
(`engine_changed`); a read compares only the list of engines (C-speed list equality),
to notice joins and leaves; nothing else is walked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.cluster.engine_state import EngineState
from shoal.scheduler.node import Node, NodeContainer, NodeImage
from shoal.scheduler.resources import container_cpus

if TYPE_CHECKING:
    from shoal.cluster.engine import Engine
    from shoal.cluster.records import Container, EngineSpecs


def node_container(container: Container, engine_cpus: int) -> NodeContainer:
    """The scheduler's record of a cached container (as `NodeContainer.from_inspect` reads
    a full inspect), from the fields the compact record keeps decoded."""
    placement = container.host_placement
    return NodeContainer(
        id=container.id,
        names=(container.name,) if container.name else (),
        image=container.image or container.image_id,
        labels=container.labels,
        state=container.status,
        host_config=placement,
        config_exposed_ports=container.exposed_ports,
        network_ports=container.network_ports,
        cpus=container_cpus(placement, engine_cpus),
        memory=container.reserved_memory,
        swarm_id=container.swarm_id,
    )


def build_node(engine: Engine) -> Node:
    """An engine's view from scratch: the reference every kept view must equal."""
    cpus = engine.specs.cpus or 1
    return engine_node(
        engine, [node_container(c, cpus) for c in engine.containers.values()]
    )


def engine_node(engine: Engine, containers: list[NodeContainer]) -> Node:
    """ENGINE's view around its containers' records."""
    return Node(
        id=engine.id,
        name=engine.name,
        addr=engine.addr,
        labels=dict(engine.specs.labels),
        health=engine.health_indicator,
        total_cpus=engine.total_cpus,
        total_memory=engine.total_memory,
        containers=containers,
        images=[
            NodeImage(id=i.id, repo_tags=i.repo_tags, repo_digests=i.repo_digests)
            for i in engine.images
        ],
    )


@dataclass(slots=True)
class _Part:
    """A container's scheduler record, valid while the cache holds this very object."""

    container: Container
    engine_cpus: int
    node_container: NodeContainer


@dataclass(slots=True)
class _Built:
    generation: int
    specs: EngineSpecs
    node: Node


class NodeViews:
    """One `Node` per active (validated) engine, in the cluster's engine order."""

    def __init__(self) -> None:
        #: Bumped by `touch`: an engine's containers or images changed.
        self._generation: dict[Engine, int] = {}
        self._built: dict[Engine, _Built] = {}
        #: The engines the list was made of, and whether a state or specs changed since.
        self._listed: list[Engine] = []
        self._stale = True
        self._nodes: list[Node] = []
        self._position: dict[Engine, int] = {}
        self._active: tuple[Engine, ...] = ()
        self._by_id: dict[str, Engine] = {}
        self._dirty: set[Engine] = set()
        #: engine -> container ID -> its record, made when the container changed.
        self._parts: dict[Engine, dict[str, _Part]] = {}

    def touch(self, engine: Engine) -> None:
        """ENGINE's cache changed: its view is rebuilt at the next read, no other."""
        self._generation[engine] = self._generation.get(engine, 0) + 1
        self._dirty.add(engine)

    def engine_changed(self, engine: Engine, field: str) -> None:
        """An engine field changed (engines tell every change, `told_fields`): a state or
        specs change may move it in or out of the list, a failure count only its health."""
        if field in ("state", "specs"):
            self._stale = True
        elif field == "failure_count":
            self._dirty.add(engine)

    def container_changed(
        self, engine: Engine, old: Container | None, new: Container | None
    ) -> None:
        """Make NEW's record now (one inspect read), so the next rebuild only gathers."""
        self.touch(engine)
        parts = self._parts.setdefault(engine, {})
        if new is None:
            if old is not None:
                parts.pop(old.id, None)
            return
        cpus = engine.specs.cpus or 1
        parts[new.id] = _Part(new, cpus, node_container(new, cpus))

    def nodes(
        self,
        engines: Iterable[Engine],
        pending: Mapping[Engine, Sequence[NodeContainer]] | None = None,
    ) -> list[Node]:
        """The views of ENGINES (the cluster's, in order), PENDING creates overlaid.

        The list returned is the caller's: later changes never alter it.
        """
        self._sync(engines)
        out = list(self._nodes)
        for engine, extra in (pending or {}).items():
            i = self._position.get(engine)
            if i is not None and extra:
                out[i] = out[i].with_containers(*extra)
        return out

    def active(self) -> Sequence[Engine]:
        """The engines the views are of (the active ones, as of the last `nodes`)."""
        return self._active

    def engine(self, node_id: str) -> Engine | None:
        """The active engine a view belongs to (as of the last `nodes`)."""
        return self._by_id.get(node_id)

    def _sync(self, engines: Iterable[Engine]) -> None:
        listed = list(engines)
        if self._stale or listed != self._listed:
            self._resync(listed)
        elif self._dirty:
            nodes = self._nodes
            for engine in self._dirty:
                i = self._position.get(engine)
                if i is not None:
                    if nodes is self._nodes:
                        nodes = list(nodes)  # copy on write: handed-out lists stay as they were
                    nodes[i] = self._view(engine)
            self._nodes = nodes
        self._dirty.clear()

    def _resync(self, listed: list[Engine]) -> None:
        """Engines joined, left, or changed state or specs: redo the list (not the views of
        engines whose caches did not change)."""
        nodes: list[Node] = []
        position: dict[Engine, int] = {}
        by_id: dict[str, Engine] = {}
        for engine in listed:
            if engine.state is EngineState.PENDING:
                continue
            position[engine] = len(nodes)
            node = self._view(engine)
            by_id.setdefault(node.id, engine)
            nodes.append(node)
        present = set(listed)
        for gone in [e for e in self._built if e not in present]:
            del self._built[gone]
        for gone in [e for e in self._generation if e not in present]:
            del self._generation[gone]
        for gone in [e for e in self._parts if e not in present]:
            del self._parts[gone]
        self._listed, self._stale = listed, False
        self._nodes, self._position, self._by_id = nodes, position, by_id
        self._active = tuple(position)

    def _view(self, engine: Engine) -> Node:
        """ENGINE's view: kept if nothing it was built from changed, re-healthed if only
        the health indicator did, else built again."""
        generation = self._generation.get(engine, 0)
        built = self._built.get(engine)
        if built is None or built.generation != generation or built.specs is not engine.specs:
            built = _Built(generation, engine.specs, self._build(engine))
            self._built[engine] = built
        else:
            health = engine.health_indicator
            if built.node.health != health:
                built.node = dataclasses.replace(built.node, health=health)
        return built.node

    def _build(self, engine: Engine) -> Node:
        """`build_node`, reusing each container's record while it is still current."""
        cpus = engine.specs.cpus or 1
        parts = self._parts.setdefault(engine, {})
        containers: list[NodeContainer] = []
        for cid, container in engine.containers.items():
            part = parts.get(cid)
            if part is None or part.container is not container or part.engine_cpus != cpus:
                part = _Part(container, cpus, node_container(container, cpus))
                parts[cid] = part
            containers.append(part.node_container)
        if len(parts) > len(containers):  # records of containers gone unannounced
            for cid in [c for c in parts if c not in engine.containers]:
                del parts[cid]
        return engine_node(engine, containers)


__all__ = ["NodeViews", "build_node"]
