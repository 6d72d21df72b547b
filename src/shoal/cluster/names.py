"""Container names are unique in the whole cluster, not per engine.

Each engine only knows its own names, so two creates or renames sent to two nodes could
both take one name. Every path that sets a name (create, rename, the watchdog's moves)
checks the names cached from every engine and the names being set right now, and holds
its own until the engine's answer is in the cache. Creates hold theirs in the cluster's
pending-create table (the scheduler needs the rest of that record too); renames here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from shoal.cluster.errors import Conflict
from shoal.cluster.index import Placed


def name_key(name: str) -> str:
    """`/web` and `web` are one name, as on the engine."""
    return name.lstrip("/")


def conflict(name: str, holder: str) -> Conflict:
    """Docker's own text; HOLDER is empty while the holding create has no ID yet."""
    return Conflict(
        f'Conflict. The container name "/{name_key(name)}" is already in use by container '
        f'"{holder}". You have to remove (or rename) that container to be able to reuse '
        "that name."
    )


@dataclass(slots=True)
class NameReservations:
    """Names that renames in flight are setting: name -> ID of the container taking it."""

    _held: dict[str, str] = field(default_factory=dict)

    def holder(self, name: str) -> str | None:
        return self._held.get(name_key(name))

    @contextlib.contextmanager
    def hold(self, name: str, cid: str) -> Iterator[None]:
        """Hold NAME for container CID; a second hold by the same container shares it."""
        key = name_key(name)
        current = self._held.get(key)
        if current is not None:
            if current != cid:
                raise conflict(key, current)
            yield
            return
        self._held[key] = cid
        try:
            yield
        finally:
            if self._held.get(key) == cid:
                del self._held[key]


def check_free(
    name: str,
    cached: Iterable[Placed],
    *,
    creating: bool,
    renaming: str | None,
    cid: str = "",
    swarm_id: str = "",
) -> None:
    """Raise Conflict unless NAME may go to container CID (or to a new copy of SWARM_ID).

    `cached` are the containers any engine has under the name; `creating` says a create
    in flight holds it, `renaming` which container a rename in flight takes it for. A
    copy of SWARM_ID on a node that is down does not hold the name against a new copy of
    the same swarm ID: that is the watchdog moving the container off the failed node.
    """
    if creating:
        raise conflict(name, "")
    if renaming is not None and renaming != cid:
        raise conflict(name, renaming)
    for placed in cached:
        container = placed.container
        if container.id == cid:
            continue
        if swarm_id and container.swarm_id == swarm_id and not placed.engine.healthy:
            continue
        raise conflict(name, container.id)


__all__ = ["NameReservations", "check_free", "conflict", "name_key"]
