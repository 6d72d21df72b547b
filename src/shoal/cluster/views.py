"""What the read routes answer from, kept current by the engines' cache changes.

`/info` and `GET /containers/json` used to walk every cached container per request. Here
each change costs O(1) when it happens (a slot replaced, a counter bumped), and readers
redo only what changed since their last look: a container's list entry is re-encoded when
that container (or its engine's name) changes, an engine's totals when one of its
containers does, and the newest-first order is patched with the slots that came and went.

The slots mirror `ContainerIndex` (keyed by container ID, copies grouped by swarm ID), so
the list hides the same stale copies around a node failure as `Cluster.containers()`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shoal.cluster.engine import Engine
from shoal.cluster.index import Placed
from shoal.cluster.info_tally import BlockRenderer, InfoTally
from shoal.cluster.records import Container

#: Past this many pending changes, the order is rebuilt by one sort instead of patched.
REBUILD_FRACTION = 8


@dataclass(slots=True)
class NodeTotals:
    """An engine's containers counted as `/info` shows them."""

    total: int = 0
    running: int = 0
    paused: int = 0
    reserved_cpus: int = 0
    reserved_memory: int = 0

    @classmethod
    def of(cls, containers: Iterable[Container]) -> NodeTotals:
        totals = cls()
        for c in containers:
            state = c.state
            paused = bool(state.get("Paused"))
            totals.total += 1
            totals.paused += paused
            totals.running += bool(state.get("Running")) and not paused
            totals.reserved_cpus += c.reserved_cpus
            totals.reserved_memory += c.reserved_memory
        return totals


@dataclass(slots=True, eq=False)
class EngineView:
    """One engine's share of the views; `generation` moves with every container change."""

    engine: Engine
    generation: int = 0
    slots: dict[str, Slot] = field(default_factory=dict)
    #: (name, ip) the list entries of this engine were encoded with; replaced on change,
    #: so a slot compares it by identity.
    render: tuple[str, str] = ("", "")
    healthy: bool = False
    _totals: NodeTotals | None = None
    _totals_key: tuple[int, int] = (-1, -1)

    def totals(self) -> NodeTotals:
        """Counts and reservations, recounted only after one of its containers changed."""
        key = (self.generation, len(self.engine.containers))
        if self._totals is None or key != self._totals_key:
            self._totals = NodeTotals.of(self.engine.containers.values())
            self._totals_key = key
        return self._totals

    def refresh(self) -> None:
        """Read the engine's name and health: entries re-encode only if the name moved."""
        render = (self.engine.name, self.engine.ip)
        if render != self.render:
            self.render = render
        self.healthy = self.engine.healthy


@dataclass(slots=True, eq=False)
class Slot:
    """One cached container in the list, with what readers derived from it."""

    placed: Placed
    view: EngineView
    running: bool
    #: (-created, ID): newest first, the ID breaking ties so the order is total.
    key: tuple[float, str] = (0.0, "")
    #: The encoded list entry (`,{...}`, for the engine name in `rendered`), where its
    #: Status starts, how many bytes follow the Status, and when the Status goes stale
    #: ("Up 5 minutes" until minute 6).
    entry: bytes = b""
    status_start: int = 0
    tail_len: int = 0
    rendered: tuple[str, str] | None = None
    status_until: float = -math.inf


@dataclass(eq=False)
class ReadViews:
    """Slots by container ID, per-engine views and the newest-first order, patched lazily."""

    _slots: dict[str, Slot] = field(default_factory=dict)
    _engines: dict[Engine, EngineView] = field(default_factory=dict)
    _copies: dict[str, list[Slot]] = field(default_factory=dict)
    #: Swarm IDs cached more than once (a moved container whose old node is not cleaned).
    _multi: set[str] = field(default_factory=set)
    _order: list[Slot] = field(default_factory=list)
    _keys: list[tuple[float, str]] = field(default_factory=list)
    _added: list[Slot] = field(default_factory=list)
    _removed: list[Slot] = field(default_factory=list)
    #: Set when the pending changes outgrew the order: the next read sorts afresh.
    _rebuild: bool = False
    #: Engines whose share of `/info` may have changed since the tally last saw them.
    _touched: set[Engine] = field(default_factory=set)
    _tally: InfoTally = field(default_factory=InfoTally)

    # -- changes (called by the cluster) ------------------------------------------
    def container_changed(
        self, engine: Engine, old: Container | None, new: Container | None
    ) -> None:
        view = self.view(engine)
        view.generation += 1
        self._touched.add(engine)
        if old is not None:
            self._remove(engine, old)
        if new is not None:
            self._add(view, new)
        if len(self._added) + len(self._removed) > 2 * len(self._slots) + 64:
            # Nobody read the list for a while: forget the changes, sort on the next read.
            self._added, self._removed, self._rebuild = [], [], True

    def engine_removed(self, engine: Engine) -> None:
        """The engine left the cluster: its containers leave the views with it."""
        for container in list(engine.containers.values()):
            self._remove(engine, container)
        self._engines.pop(engine, None)
        self._touched.add(engine)

    def touch(self, engine: Engine) -> None:
        """Something `/info` shows of ENGINE changed (state, error, specs, images...)."""
        self._touched.add(engine)

    def info(
        self,
        is_member: Callable[[Engine], bool],
        render: BlockRenderer,
        sort_key: Callable[[Engine], tuple[Any, ...]],
    ) -> InfoTally:
        """The `/info` tally, brought up to date with the engines touched since the last
        read (IS_MEMBER tells whether one is still in the cluster)."""
        touched, self._touched = self._touched, set()
        for engine in touched:
            view = self.view(engine) if is_member(engine) else None
            self._tally.update(engine, view, render, sort_key)
        return self._tally

    def _add(self, view: EngineView, container: Container) -> None:
        cid = container.id
        slot = Slot(Placed(view.engine, container), view, container.running)
        previous = self._slots.get(cid)
        if previous is not None:  # the same ID on another engine: the index keeps the last
            previous.view.slots.pop(cid, None)
            self._removed.append(previous)
        self._slots[cid] = slot
        view.slots[cid] = slot
        self._added.append(slot)
        sid = container.swarm_id
        if sid:
            copies = self._copies.setdefault(sid, [])
            copies.append(slot)
            if len(copies) > 1:
                self._multi.add(sid)

    def _remove(self, engine: Engine, container: Container) -> None:
        cid = container.id
        slot = self._slots.get(cid)
        if slot is not None and slot.view.engine is engine:
            del self._slots[cid]
            slot.view.slots.pop(cid, None)
            self._removed.append(slot)
        sid = container.swarm_id
        copies = self._copies.get(sid) if sid else None
        if copies and sid:
            copies[:] = [
                s for s in copies if not (s.view.engine is engine and s.placed.container.id == cid)
            ]
            if len(copies) < 2:
                self._multi.discard(sid)
            if not copies:
                del self._copies[sid]

    # -- reads ----------------------------------------------------------------------
    def view(self, engine: Engine) -> EngineView:
        view = self._engines.get(engine)
        if view is None:
            view = self._engines[engine] = EngineView(engine)
        return view

    def ordered(self) -> list[Slot]:
        """Every slot, newest first (hidden copies included: see `hidden`)."""
        added, removed = self._added, self._removed
        if not added and not removed and not self._rebuild:
            return self._order
        self._added, self._removed = [], []
        if self._rebuild or len(added) + len(removed) > len(self._order) // REBUILD_FRACTION + 32:
            self._rebuild = False
            slots = list(self._slots.values())
            for slot in slots:
                if not slot.key[1]:
                    slot.key = _key(slot)
            slots.sort(key=lambda s: s.key)
            self._order = slots
            self._keys = [s.key for s in slots]
            return self._order
        order, keys = self._order, self._keys
        for slot in removed:
            if slot.key[1]:
                i = bisect.bisect_left(keys, slot.key)
                if i < len(order) and order[i] is slot:
                    del order[i]
                    del keys[i]
        for slot in added:
            if self._slots.get(slot.placed.container.id) is not slot or slot.key[1]:
                continue  # replaced before it was ever read, or already placed
            slot.key = _key(slot)
            i = bisect.bisect_left(keys, slot.key)
            order.insert(i, slot)
            keys.insert(i, slot.key)
        return order

    def hidden(self) -> set[int]:
        """`id()` of the slots `Cluster.containers()` leaves out: stale copies of a swarm ID
        behind the one on a healthy engine, newest first (usually none)."""
        out: set[int] = set()
        for sid in self._multi:
            copies = self._copies[sid]
            shown = max(copies, key=lambda s: (s.view.engine.healthy, s.placed.container.created))
            out.update(id(s) for s in copies if s is not shown)
        return out

    def slot(self, cid: str) -> Slot | None:
        return self._slots.get(cid)

    def engine_views(self, engines: list[Engine]) -> list[EngineView]:
        """The views of `engines`, each refreshed (name, health) for this read."""
        views = []
        for engine in engines:
            view = self._engines.get(engine)
            if view is None:
                view = self._engines[engine] = EngineView(engine)
            view.refresh()
            views.append(view)
        return views


def _key(slot: Slot) -> tuple[float, str]:
    container = slot.placed.container
    return (-container.created, container.id)
