"""`/info`'s cluster-wide figures and node blocks, patched per engine that changed.

Reading `/info` used to visit every engine (its totals, its block, its images) on every
request. Engines now say when anything `/info` shows of them changes (`told_fields`, a
container or image change), and the tally takes that engine's old share out and puts
the new one in: a read where nothing changed costs no work per engine at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.cluster.engine_state import EngineState

if TYPE_CHECKING:
    from shoal.cluster.engine import Engine
    from shoal.cluster.views import EngineView, NodeTotals

#: Renders an engine's node block (its encoded `SystemStatus` pairs, without brackets).
BlockRenderer = Callable[["Engine", "NodeTotals"], bytes]


@dataclass(slots=True, eq=False)
class InfoPart:
    """One engine's share of `/info` as last counted, so it can be taken out again."""

    counted: bool  # not Pending: its containers, CPUs, memory and images count
    totals: NodeTotals
    cpus: int
    memory: int
    image_list: object  # the `engine.images` list `images` was read from
    images: tuple[str, ...]
    block: bytes
    sort_key: tuple[Any, ...]


@dataclass(eq=False)
class InfoTally:
    """Sums over the counted engines, image IDs with how many engines hold each, and the
    node blocks in display order (re-sorted only when an engine came, went or was renamed)."""

    containers: int = 0
    running: int = 0
    paused: int = 0
    cpus: int = 0
    memory: int = 0
    image_holders: Counter[str] = field(default_factory=Counter)
    parts: dict[Engine, InfoPart] = field(default_factory=dict)
    _order: list[Engine] | None = None
    _blocks: list[bytes] | None = None

    @property
    def nodes(self) -> int:
        return len(self.parts)

    @property
    def images(self) -> int:
        return len(self.image_holders)

    def update(
        self,
        engine: Engine,
        view: EngineView | None,
        render: BlockRenderer,
        sort_key: Callable[[Engine], tuple[Any, ...]],
    ) -> None:
        """ENGINE changed: VIEW is its read view while it is in the cluster, else None."""
        old = self.parts.pop(engine, None)
        if old is not None:
            self._count(old, -1)
        if view is None or engine.state is EngineState.DISCONNECTED:
            if old is not None:
                self._order = None
            return
        totals = view.totals()
        images = engine.images
        part = InfoPart(
            counted=engine.state is not EngineState.PENDING,
            totals=totals,
            cpus=engine.total_cpus,
            memory=engine.total_memory,
            image_list=images,
            images=(
                old.images if old is not None and old.image_list is images
                else tuple(i.id for i in images)
            ),
            block=render(engine, totals),
            sort_key=sort_key(engine),
        )  # fmt: skip
        self.parts[engine] = part
        self._count(part, +1)
        if old is None or old.sort_key != part.sort_key:
            self._order = None
        self._blocks = None

    def blocks(self) -> Iterable[bytes]:
        """The node blocks, in display order."""
        parts = self.parts
        if self._order is None:
            self._order = sorted(parts, key=lambda e: parts[e].sort_key)
            self._blocks = None
        if self._blocks is None:
            self._blocks = [parts[e].block for e in self._order]
        return self._blocks

    def _count(self, part: InfoPart, sign: int) -> None:
        if not part.counted:
            return
        totals = part.totals
        self.containers += sign * totals.total
        self.running += sign * totals.running
        self.paused += sign * totals.paused
        self.cpus += sign * part.cpus
        self.memory += sign * part.memory
        holders = self.image_holders
        for image in set(part.images):
            holders[image] += sign
            if not holders[image]:
                del holders[image]
