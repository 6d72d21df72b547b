"""An engine's cached objects: containers, images, networks and volumes.

Every change goes through these methods, so the listener (the cluster's indexes) hears
of each container that appears, changes or goes, and of each new image list.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from shoal.cluster.engine_state import EngineListener
from shoal.cluster.errors import EngineError
from shoal.cluster.records import (
    Container,
    EngineSpecs,
    Image,
    ImageIndex,
    Network,
    Volume,
    parse_docker_time,
)

INSPECT_CONCURRENCY = 8


class EngineCache:
    """The cache half of `Engine` (a mixin): it reads through `call` and tells `listener`."""

    specs: EngineSpecs
    listener: EngineListener
    containers: dict[str, Container]
    images: list[Image]
    image_index: ImageIndex
    networks: dict[str, Network]
    volumes: dict[str, Volume]

    def _init_cache(self) -> None:
        self.containers = {}
        self.images = []
        self.image_index = ImageIndex([])
        self.networks = {}
        self.volumes = {}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _listened(self) -> Any:
        """The engine the listener is told about (this object, as an `Engine`)."""
        return self

    async def refresh_all(self) -> None:
        await self.refresh_containers()
        await asyncio.gather(self.refresh_images(), self.refresh_networks(), self.refresh_volumes())

    async def refresh_containers(self) -> None:
        """List, then inspect only what is new or changed state since the last look."""
        listing = await self.call("GET", "/containers/json", params={"all": "1"}, timeout=30.0)
        seen: set[str] = set()
        stale: list[str] = []
        for item in listing or []:
            cid = item["Id"]
            seen.add(cid)
            cached = self.containers.get(cid)
            if (
                cached is None
                or cached.status != item.get("State")
                or cached.status == "restarting"
                or cached.name not in (item.get("Names") or [cached.name])
            ):
                stale.append(cid)
        for cid in [c for c in self.containers if c not in seen]:
            self._set_container(cid, None)
        semaphore = asyncio.Semaphore(INSPECT_CONCURRENCY)

        async def inspect(cid: str) -> None:
            async with semaphore:
                await self.refresh_container(cid)

        await asyncio.gather(*(inspect(cid) for cid in stale))

    async def refresh_container(self, cid: str) -> Container | None:
        """Full inspect of one container; gone on the engine means gone from the cache."""
        try:
            data = await self.call("GET", f"/containers/{cid}/json")
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
        else:
            self.containers[cid] = container
        self.listener.container_changed(self._listened(), old, container)

    def forget_container(self, cid: str) -> None:
        self._set_container(cid, None)

    def restore_container(self, container: Container) -> None:
        """Put back a container the watchdog dropped but could not move."""
        self._set_container(container.id, container)

    async def refresh_images(self) -> None:
        listing = await self.call("GET", "/images/json", params={"all": "1"}, timeout=30.0)
        self.images = [Image(item) for item in listing or []]
        self.image_index = ImageIndex(self.images)
        self.listener.images_changed(self._listened())

    async def refresh_networks(self) -> None:
        listing = await self.call("GET", "/networks", timeout=30.0)
        self.networks = {n["Id"]: Network(n) for n in listing or []}

    async def refresh_network(self, nid: str) -> None:
        try:
            data = await self.call("GET", f"/networks/{nid}")
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
        listing = await self.call("GET", "/volumes", timeout=30.0)
        self.volumes = {v["Name"]: Volume(v) for v in (listing or {}).get("Volumes") or []}

    def forget_volume(self, name: str) -> None:
        """A volume removed through shoal: gone from the cache before the next refresh."""
        self.volumes.pop(name, None)
