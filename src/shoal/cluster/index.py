"""The cluster's container indexes: by ID, by name and by swarm ID, with sorted keys for
prefix lookups, so resolving a reference is a few dictionary reads, never a walk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from shoal.cluster.engine import Engine
from shoal.cluster.errors import NotFound
from shoal.cluster.prefix import SortedKeys
from shoal.cluster.records import Container


@dataclass(slots=True)
class Placed:
    """A container and the engine that runs it: what every container route needs."""

    engine: Engine
    container: Container


def preferred_copy(copies: Sequence[Placed]) -> Placed:
    """Of several copies of one swarm ID, the one shown: on a healthy engine, newest first."""
    return max(copies, key=lambda p: (p.engine.healthy, p.container.created))


def _without(entries: list[Placed], engine: Engine, cid: str) -> list[Placed]:
    return [p for p in entries if not (p.engine is engine and p.container.id == cid)]


@dataclass
class ContainerIndex:
    """Kept current by the engines' cache changes (`add`, `remove`); read by lookups."""

    _by_id: dict[str, Placed] = field(default_factory=dict)
    _by_name: dict[str, list[Placed]] = field(default_factory=dict)
    #: swarm ID -> every cached copy; more than one only around a node failure.
    _by_swarm_id: dict[str, list[Placed]] = field(default_factory=dict)
    _id_keys: SortedKeys = field(default_factory=SortedKeys)
    _swarm_id_keys: SortedKeys = field(default_factory=SortedKeys)

    def add(self, placed: Placed) -> None:
        container = placed.container
        self._by_id[container.id] = placed
        self._id_keys.add(container.id)
        self._by_name.setdefault(container.name.lstrip("/"), []).append(placed)
        if container.swarm_id:
            self._by_swarm_id.setdefault(container.swarm_id, []).append(placed)
            self._swarm_id_keys.add(container.swarm_id)

    def remove(self, engine: Engine, container: Container) -> None:
        placed = self._by_id.get(container.id)
        if placed is not None and placed.engine is engine:
            del self._by_id[container.id]
            self._id_keys.discard(container.id)
        key = container.name.lstrip("/")
        entries = self._by_name.get(key)
        if entries:
            entries[:] = _without(entries, engine, container.id)
            if not entries:
                del self._by_name[key]
        sid = container.swarm_id
        copies = self._by_swarm_id.get(sid) if sid else None
        if copies and sid:
            copies[:] = _without(copies, engine, container.id)
            if not copies:
                del self._by_swarm_id[sid]
                self._swarm_id_keys.discard(sid)

    def all(self) -> Iterator[Placed]:
        """Every cached container, copies of one swarm ID included."""
        return iter(list(self._by_id.values()))

    def containers(self) -> Iterator[Placed]:
        """Every container once: copies hidden behind another copy of their swarm ID are not."""
        return (p for p in self._by_id.values() if self.visible(p))

    def hidden(self) -> Iterator[Placed]:
        """The copies `containers()` leaves out: the stale ones around a node failure."""
        for copies in self._by_swarm_id.values():
            if len(copies) > 1:
                shown = preferred_copy(copies)
                yield from (p for p in copies if p is not shown)

    def by_id(self, cid: str) -> Placed | None:
        return self._by_id.get(cid)

    def copies(self, swarm_id: str) -> list[Placed]:
        return list(self._by_swarm_id.get(swarm_id, ()))

    def visible(self, placed: Placed) -> bool:
        """One copy per swarm ID is shown: one on a healthy engine, newest first."""
        sid = placed.container.swarm_id
        copies = self._by_swarm_id.get(sid) if sid else None
        if not copies or len(copies) < 2:
            return True
        return preferred_copy(copies) is placed

    def named(self, name: str) -> list[Placed]:
        """Every cached container with this exact name, on any engine."""
        return list(self._by_name.get(name.lstrip("/"), ()))

    def name_taken(self, name: str) -> Container | None:
        for p in self._by_name.get(name.lstrip("/"), ()):
            return p.container
        return None

    def find(self, ref: str) -> Placed:
        """ID, short ID, swarm ID, name (`node/name` too), then a unique ID prefix."""
        if not ref:
            raise NotFound(f"No such container: {ref}")
        placed = self._by_id.get(ref) or self._by_short_id(ref)
        if placed is not None:
            return placed
        copies = self._by_swarm_id.get(ref)
        if not copies and len(ref) == 12:
            short = self._swarm_id_keys.with_prefix(ref)
            copies = self._by_swarm_id[short[0]] if short else None
        if copies:
            return preferred_copy(copies)
        candidates = [p for p in self._named(ref) if self.visible(p)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise NotFound(f"No such container: {ref}")
        matches = [self._by_id[cid] for cid in self._id_keys.with_prefix(ref)]
        matches += [
            p for sid in self._swarm_id_keys.with_prefix(ref) for p in self._by_swarm_id[sid]
        ]
        matches = [p for p in matches if self.visible(p)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"No such container: {ref}")

    def _by_short_id(self, ref: str) -> Placed | None:
        if len(ref) != 12:
            return None
        short = self._id_keys.with_prefix(ref)
        return self._by_id[short[0]] if short else None

    def _named(self, ref: str) -> list[Placed]:
        bare = ref.lstrip("/")
        found = list(self._by_name.get(bare, ()))
        if "/" in bare:
            node, _, name = bare.rpartition("/")
            for p in self._by_name.get(name, ()):
                if node in (p.engine.specs.name, p.engine.id) and p not in found:
                    found.append(p)
        return found
