"""An engine's cached objects: containers, images, networks and volumes.

Every change goes through these methods, so the listener (the cluster's indexes) hears
of each container that appears, changes or goes, and of each new image list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from shoal.cluster.engine_state import EngineListener
from shoal.cluster.errors import EngineError, EngineFailure, NotFound
from shoal.cluster.records import (
    Container,
    EngineSpecs,
    Image,
    ImageIndex,
    Network,
    Volume,
    parse_docker_time,
)

#: Full inspects in flight across the whole cluster for adoption and reconciliation (one
#: semaphore shared by every engine): bounds the manager's connections and CPU bursts.
INSPECT_CONCURRENCY = 32

#: The longest background work waits for the first validations to be done.
QUIET_MAX_WAIT = 20.0

log = logging.getLogger(__name__)

#: The `GET /containers/json` keys `Container.summary` gives, in its order.
SUMMARY_KEYS = (
    "Id", "Names", "Image", "ImageID", "Command", "Created", "Ports", "Labels", "State",
    "Status", "HostConfig", "NetworkSettings", "Mounts",
)  # fmt: skip


class InspectQueue:
    """The cluster's background inspects: at most `limit` in flight, and none while an
    engine is in its first validation, so adopting the last engines does not compete
    (for the manager's CPU and the engines') with inspecting the first ones. Event
    streams wait for the same moment (`quiet`)."""

    def __init__(self, limit: int = INSPECT_CONCURRENCY) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._adopting = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._filling = 0
        self._announced = False
        #: Set once every container of the first adoption has its inspect.
        self.settled = asyncio.Event()

    def filling(self, delta: int) -> None:
        """An engine's background inspects began (+1) or ended (-1); the first time none
        are left after adoption is logged, as the end of adoption."""
        self._filling += delta
        if self._filling <= 0 and not self._adopting and not self._announced:
            self._announced = True
            self.settled.set()
            log.info("Every adopted container inspected")

    def adoption_started(self) -> None:
        self._adopting += 1
        self._quiet.clear()

    def adoption_ended(self) -> None:
        self._adopting -= 1
        if self._adopting <= 0:
            self._adopting = 0
            self._quiet.set()

    async def quiet(self) -> None:
        """Until no engine is in its first validation (a hung one holds nobody long)."""
        if not self._quiet.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), QUIET_MAX_WAIT)

    async def __aenter__(self) -> None:
        await self.quiet()
        await self._slots.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


class ListedContainer(Container):
    """A container known from its engine's list only, until its full inspect arrives.

    Its `inspect` holds what the list says (name, labels, state, image, networks,
    mounts), so indexes, counts and `ps` serve it at once; reads that need the rest
    (the inspect route, scheduling reservations) fetch it first (`Engine.inspected`).
    It is short-lived, so it is not packed.
    """

    __slots__ = ("_doc", "listing")

    def __init__(
        self, inspect: dict[str, Any], engine_cpus: int, listing: dict[str, Any]
    ) -> None:
        self._decode(inspect, engine_cpus)
        created = listing.get("Created")
        self.created = float(created) if isinstance(created, int | float) else 0.0
        self._doc = inspect
        self.listing = listing

    @property
    def inspect(self) -> dict[str, Any]:
        return self._doc

    def _identity(self) -> object:
        return self._doc

    def summary(self, now: float) -> dict[str, Any]:
        """The engine's own list entry (its `Status` as of the listing)."""
        return {k: self.listing[k] for k in SUMMARY_KEYS if k in self.listing}


def primary_name(names: list[str]) -> str:
    """The container's own name among a list entry's names (link aliases have two slashes)."""
    for name in names:
        if name.count("/") == 1:
            return name
    return names[0] if names else ""


def listed_container(item: dict[str, Any], engine_cpus: int) -> ListedContainer:
    """A list entry in inspect shape, for the fields the list carries (its creation time
    is the list's number, kept as `created`)."""
    state = str(item.get("State") or "")
    inspect: dict[str, Any] = {
        "Id": item["Id"],
        "Name": primary_name(item.get("Names") or []),
        "Image": item.get("ImageID", ""),
        "State": {
            "Status": state,
            "Running": state in ("running", "paused", "restarting"),
            "Paused": state == "paused",
            "Restarting": state == "restarting",
        },
        "Config": {"Image": item.get("Image", ""), "Labels": item.get("Labels") or {}},
        "HostConfig": item.get("HostConfig") or {},
        "NetworkSettings": item.get("NetworkSettings") or {},
        "Mounts": item.get("Mounts") or [],
    }
    return ListedContainer(inspect, engine_cpus, item)


class EngineCache:
    """The cache half of `Engine` (a mixin): it reads through `get` and tells `listener`."""

    specs: EngineSpecs
    listener: EngineListener
    containers: dict[str, Container]
    images: list[Image]
    image_index: ImageIndex
    networks: dict[str, Network]
    volumes: dict[str, Volume]
    inspect_slots: InspectQueue
    #: IDs of the cached containers that are list entries still waiting for their inspect.
    listed: set[str]

    def _init_cache(self) -> None:
        self.containers = {}
        self.images = []
        self.image_index = ImageIndex([])
        self.networks = {}
        self.volumes = {}
        self.listed = set()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        raise NotImplementedError

    def _listened(self) -> Any:
        """The engine the listener is told about (this object, as an `Engine`)."""
        return self

    def _inspects_wanted(self) -> None:
        """Some containers are list entries only: fetch their inspects in the background."""

    async def list_containers(self) -> list[dict[str, Any]]:
        return list(await self.get("/containers/json", {"all": "1"}) or [])

    async def refresh_all(self) -> None:
        """Containers, then images, networks and volumes: one after another, so a refresh
        holds one connection to the engine, not four."""
        await self.refresh_containers()
        await self.refresh_images()
        await self.refresh_networks()
        await self.refresh_volumes()

    async def refresh_containers(self, listing: list[dict[str, Any]] | None = None) -> None:
        """Reconcile the cache with the engine's list (LISTING if just read).

        New containers are cached from their list entry at once and inspected in the
        background; a known one is inspected again only when its state or name changed,
        so a refresh of an engine where nothing changed is one list call.
        """
        if listing is None:
            listing = await self.list_containers()
        seen: set[str] = set()
        stale: list[str] = []
        cpus = self.specs.cpus or 1
        for item in listing:
            cid = item["Id"]
            seen.add(cid)
            cached = self.containers.get(cid)
            if cached is None:
                self._set_container(cid, listed_container(item, cpus))
            elif isinstance(cached, ListedContainer):
                if cached.listing.get("State") != item.get("State") or cached.listing.get(
                    "Names"
                ) != item.get("Names"):
                    self._set_container(cid, listed_container(item, cpus))
            elif (
                cached.status != item.get("State")
                or cached.status == "restarting"
                or cached.name not in (item.get("Names") or [cached.name])
            ):
                stale.append(cid)
        for cid in [c for c in self.containers if c not in seen]:
            self._set_container(cid, None)
        for cid in stale:
            async with self.inspect_slots:
                await self.refresh_container(cid)
        if self.listed:
            self._inspects_wanted()

    async def fill_inspects(self) -> None:
        """Replace list entries by full inspects, one at a time for this engine, within the
        cluster-wide bound. An entry the engine will not inspect stays listed (it is
        fetched again on demand or after the next reconciliation)."""
        failed: set[str] = set()
        self.inspect_slots.filling(+1)
        try:
            while pending := self.listed - failed:
                cid = next(iter(pending))
                async with self.inspect_slots:
                    if cid not in self.listed:
                        continue
                    try:
                        await self.refresh_container(cid)
                    except EngineError:
                        failed.add(cid)
                    except EngineFailure:
                        return  # unreachable: the next reconciliation or recovery restarts it
        finally:
            self.inspect_slots.filling(-1)

    async def inspected(self, container: Container) -> Container:
        """CONTAINER with its full inspect: a list entry is inspected now, ahead of the
        background queue."""
        if not isinstance(container, ListedContainer):
            return container
        full = await self.refresh_container(container.id)
        if full is None:
            raise NotFound(f"No such container: {container.id}")
        return full

    async def refresh_container(self, cid: str) -> Container | None:
        """Full inspect of one container; gone on the engine means gone from the cache."""
        try:
            data = await self.get(f"/containers/{cid}/json")
        except EngineError as exc:
            if exc.status == 404:
                self._set_container(cid, None)
                return None
            raise
        self._adjust_times(data)
        container = Container(data, engine_cpus=self.specs.cpus or 1)
        self._set_container(container.id, container)
        return container

    def _adjust_times(self, data: dict[str, Any]) -> None:
        """Shift engine timestamps by the clock skew measured when the specs were read."""
        skew = self.specs.clock_skew
        if not skew:
            return
        def shift(value: str | None) -> str | None:
            stamp = parse_docker_time(value)
            if not stamp:
                return value
            return datetime.fromtimestamp(stamp + skew, UTC).isoformat().replace("+00:00", "Z")

        data["Created"] = shift(data.get("Created"))
        state = data.get("State") or {}
        for key in ("StartedAt", "FinishedAt"):
            if key in state:
                state[key] = shift(state[key])

    def _set_container(self, cid: str, container: Container | None) -> None:
        old = self.containers.get(cid)
        if container is None:
            if old is None:
                return
            del self.containers[cid]
            self.listed.discard(cid)
        else:
            self.containers[cid] = container
            if isinstance(container, ListedContainer):
                self.listed.add(cid)
            else:
                self.listed.discard(cid)
        self.listener.container_changed(self._listened(), old, container)

    def forget_container(self, cid: str) -> None:
        self._set_container(cid, None)

    def restore_container(self, container: Container) -> None:
        """Put back a container the watchdog dropped but could not move."""
        self._set_container(container.id, container)

    async def refresh_images(self) -> None:
        listing = await self.get("/images/json", {"all": "1"})
        self.images = [Image(item) for item in listing or []]
        self.image_index = ImageIndex(self.images)
        self.listener.images_changed(self._listened())

    async def refresh_networks(self) -> None:
        listing = await self.get("/networks")
        self.networks = {n["Id"]: Network(n) for n in listing or []}

    async def refresh_network(self, nid: str) -> None:
        try:
            data = await self.get(f"/networks/{nid}")
        except EngineError as exc:
            if exc.status == 404:
                self.networks.pop(nid, None)
                return
            raise
        self.networks[data["Id"]] = Network(data)

    def forget_network(self, nid: str) -> None:
        """A network removed through shoal: gone from the cache before the next refresh."""
        self.networks.pop(nid, None)

    async def refresh_volumes(self) -> None:
        listing = await self.get("/volumes")
        self.volumes = {v["Name"]: Volume(v) for v in (listing or {}).get("Volumes") or []}

    def forget_volume(self, name: str) -> None:
        """A volume removed through shoal: gone from the cache before the next refresh."""
        self.volumes.pop(name, None)
