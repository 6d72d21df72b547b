"""One dockerd as the cluster sees it: health, identity, and a cache kept current by events.

An engine owns two background tasks once it is validated: the refresh loop (periodic
full refresh, jittered so a thousand engines are not polled at once) and the event
monitor (the engine's `/events` stream, resumed with `since` after a break so no
event is lost). Both are cancelled by `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from shoal.cluster.client import EngineAddress, EngineClient, connection_error_text
from shoal.cluster.errors import EngineConnectionError, EngineError
from shoal.cluster.events import SeenEvents, since_param
from shoal.cluster.passthrough import RawPool, RawResponse
from shoal.cluster.records import (
    Container,
    EngineSpecs,
    Image,
    ImageIndex,
    Network,
    Volume,
    parse_docker_time,
)

log = logging.getLogger(__name__)

#: Streams (logs, pulls, uploads) last as long as they last; only connecting is bounded.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=None)

#: Container events after which the cached inspect is stale (spec 3.7).
REFRESH_EVENTS = frozenset(
    {
        "die",
        "kill",
        "oom",
        "pause",
        "start",
        "restart",
        "stop",
        "unpause",
        "rename",
        "update",
        "create",
        "health_status",
        "exec_create",
    }
)
#: Container events that change nothing shoal caches.
QUIET_EVENTS = frozenset(
    {
        "top",
        "resize",
        "export",
        "exec_start",
        "exec_detach",
        "exec_die",
        "attach",
        "detach",
        "extract-to-dir",
        "copy",
        "archive-path",
    }
)
SPECS_MAX_AGE = 300.0
INSPECT_CONCURRENCY = 8


class EngineState(enum.Enum):
    PENDING = "Pending"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    DISCONNECTED = "Disconnected"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The manage flags that shape every engine's loops."""

    refresh_min: float = 30.0
    refresh_max: float = 60.0
    failure_retry: int = 3
    overcommit: float = 0.05


class EngineListener(Protocol):
    """What an engine tells its cluster; the cluster keeps cross-engine indexes from it."""

    def engine_validated(self, engine: Engine) -> str | None: ...

    def engine_state_changed(self, engine: Engine, action: str) -> None: ...

    def container_changed(
        self, engine: Engine, old: Container | None, new: Container | None
    ) -> None: ...

    def engine_event(self, engine: Engine, event: dict[str, Any]) -> None: ...

    def images_changed(self, engine: Engine) -> None: ...

    def duplicate_copies(
        self, engine: Engine, listing: list[dict[str, Any]], *, newer_only: bool
    ) -> list[str]: ...


class Engine:
    """A Docker engine: its connection, state machine and cached objects."""

    def __init__(
        self,
        address: EngineAddress,
        client: EngineClient,
        settings: EngineSettings,
        listener: EngineListener,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.client = client
        self.raw = RawPool(client)
        self.settings = settings
        self.listener = listener
        self.clock = clock
        self.state = EngineState.PENDING
        self.specs = EngineSpecs()
        self.error = ""
        self.updated_at = clock()
        self.specs_at = 0.0
        self.failure_count = 0
        self.ip = address.host or "127.0.0.1"
        self.containers: dict[str, Container] = {}
        self.images: list[Image] = []
        self.image_index = ImageIndex([])
        self.networks: dict[str, Network] = {}
        self.volumes: dict[str, Volume] = {}
        self._last_event_nano = 0
        self._seen_events = SeenEvents()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._answering = False

    # -- identity ---------------------------------------------------------------
    @property
    def addr(self) -> str:
        return self.address.display

    @property
    def name(self) -> str:
        return self.specs.name or "(unknown)"

    @property
    def id(self) -> str:
        """Classic Swarm's engine ID: the daemon ID and the address (spec 5.1)."""
        return f"{self.specs.daemon_id}|{self.addr}" if self.specs.daemon_id else ""

    @property
    def healthy(self) -> bool:
        return self.state is EngineState.HEALTHY

    @property
    def recovering(self) -> bool:
        """Unhealthy but answering again: stale copies are being removed before Healthy."""
        return self._answering and self.state is EngineState.UNHEALTHY

    @property
    def health_indicator(self) -> int:
        retry = self.settings.failure_retry
        if self.state is not EngineState.HEALTHY or self.failure_count >= retry:
            return 0
        return 100 - self.failure_count * 100 // retry

    @property
    def total_cpus(self) -> int:
        pct = int(self.settings.overcommit * 100)
        return self.specs.cpus + self.specs.cpus * pct // 100

    @property
    def total_memory(self) -> int:
        pct = int(self.settings.overcommit * 100)
        return self.specs.memory + self.specs.memory * pct // 100

    def node_json(self) -> dict[str, Any]:
        """The `Node` object classic Swarm adds to inspect and events."""
        return {
            "ID": self.id,
            "IP": self.ip,
            "Addr": self.addr,
            "Name": self.name,
            "Cpus": self.specs.cpus,
            "Memory": self.specs.memory,
            "Labels": dict(self.specs.labels),
        }

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name=f"engine {self.address.entry}")

    async def stop(self) -> None:
        """Cancel every task this engine owns and close its connections."""
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.state = EngineState.DISCONNECTED
        self.raw.close()
        await self.client.close()

    def wake(self) -> None:
        """End the refresh loop's wait now (used when an engine came back)."""
        self._wake.set()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self) -> None:
        await self._validate_until_done()
        self._spawn(self._monitor_events(), f"events {self.address.entry}")
        await self._refresh_loop()

    async def _validate_until_done(self) -> None:
        """Pending engines are retried with backoff until they answer like an engine."""
        attempt = 0
        while True:
            try:
                await self._validate()
                return
            except (EngineConnectionError, EngineError, ValueError) as exc:
                attempt += 1
                self.error = str(exc)
                self.updated_at = self.clock()
                log.warning("engine %s validation failed: %s", self.address.entry, exc)
                delay = min(self.settings.refresh_min * (2 ** min(attempt - 1, 8)), 3600.0)
                await asyncio.sleep(delay * (0.9 + 0.2 * random.random()))

    async def _validate(self) -> None:
        await self.update_specs()
        if not self.specs.cpus or not self.specs.memory:
            raise ValueError(
                "cannot get resources for this engine, make sure "
                f"{self.addr} is a Docker Engine, not a Swarm manager"
            )
        self._last_event_nano = int(self.clock() * 1e9)
        await self.remove_duplicates(newer_only=True)
        await self.refresh_all()
        duplicate = self.listener.engine_validated(self)
        if duplicate:
            raise ValueError(duplicate)
        self.state = EngineState.HEALTHY
        self.failure_count = 0
        self.error = ""
        log.info("Registered Engine %s at %s", self.name, self.addr)
        self.listener.engine_state_changed(self, "engine_connect")

    async def _refresh_loop(self) -> None:
        while True:
            backoff = min(max(self.failure_count - self.settings.failure_retry, 0), 1000)
            spread = max(self.settings.refresh_max - self.settings.refresh_min, 0.0)
            delay = self.settings.refresh_min * (1 + backoff) + random.random() * spread
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self.state is EngineState.UNHEALTHY:
                await self.recover()
                continue
            try:
                if (
                    not self.healthy
                    or self.clock() - self.specs_at > SPECS_MAX_AGE
                ):
                    await self.update_specs()
                await self.refresh_all()
            except (EngineConnectionError, EngineError) as exc:
                log.debug("refresh of %s failed: %s", self.name, exc)

    # -- health -----------------------------------------------------------------
    def record_success(self) -> None:
        self.updated_at = self.clock()
        self.error = ""
        if self.state is EngineState.UNHEALTHY:
            # Not Healthy yet: stale copies of rescheduled containers must go first.
            self._start_recovery()
            return
        self.failure_count = 0

    def _start_recovery(self) -> asyncio.Task[None]:
        if self._recovery is None or self._recovery.done():
            self._recovery = self._spawn(self._recover(), f"recover {self.address.entry}")
        return self._recovery

    async def recover(self) -> bool:
        """Probe an unhealthy engine and, if it answers, bring it back; True when Healthy.

        Unlike classic Swarm (which flagged the engine healthy, then cleaned up in the
        background, so two copies ran side by side: its #1810/#1812), copies of
        containers that were rescheduled elsewhere are removed before the flip.
        """
        if self.state is EngineState.UNHEALTHY:
            # asyncio.wait: a cancelled caller must not cancel the shared recovery.
            await asyncio.wait({self._start_recovery()})
        return self.healthy

    async def _recover(self) -> None:
        retries = self.failure_count
        try:
            await self.update_specs()
            self._answering = True
            await self.remove_duplicates(newer_only=False)
            await self.refresh_all()
        except (EngineConnectionError, EngineError, ValueError) as exc:
            log.debug("engine %s is not back yet: %s", self.addr, exc)
            return
        finally:
            self._answering = False
        if self.state is not EngineState.UNHEALTHY:
            return
        log.info("Engine came back to life after %d retries. Hooray! (%s)", retries, self.name)
        self.state = EngineState.HEALTHY
        self.failure_count = 0
        self.listener.engine_state_changed(self, "engine_reconnect")
        self.wake()

    async def remove_duplicates(self, *, newer_only: bool) -> None:
        """Remove local copies of containers whose swarm ID another engine runs.

        Read from a light listing, before the cache is refreshed, so a stale copy is
        never cached (nor listed) beside the live one.
        """
        listing = await self.call("GET", "/containers/json", params={"all": "1"}, timeout=30.0)
        for cid in self.listener.duplicate_copies(self, listing or [], newer_only=newer_only):
            try:
                await self.call(
                    "DELETE", f"/containers/{cid}", params={"force": "1", "v": "1"}
                )
            except EngineError as exc:
                if exc.status != 404:
                    log.error("Failed to remove duplicate container %s on %s: %s",
                              cid, self.name, exc)
                    continue
            log.info("Removed duplicate container %s from %s", cid, self.name)
            self.forget_container(cid)

    def record_failure(self, error: str) -> None:
        self.failure_count += 1
        self.error = error
        self.updated_at = self.clock()
        if (
            self.state is EngineState.HEALTHY
            and self.failure_count >= self.settings.failure_retry
        ):
            log.error(
                "Flagging engine as unhealthy. Connect failed %d times (%s)",
                self.failure_count,
                self.name,
            )
            self.state = EngineState.UNHEALTHY
            self.listener.engine_state_changed(self, "engine_disconnect")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An engine call whose outcome feeds the health counters."""
        try:
            result = await self.client.call(method, path, **kwargs)
        except EngineConnectionError as exc:
            self.record_failure(str(exc))
            raise
        self._answered()
        return result

    async def forward(
        self,
        method: str,
        target: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        data: bytes | AsyncIterator[bytes] | None = None,
    ) -> aiohttp.ClientResponse:
        """A client's request sent on as it is (`target` carries any version prefix); the
        caller reads and releases the streamed answer."""
        try:
            resp = await self.client.session.request(
                method,
                self.client.base_url + target,
                params=params,
                headers=headers or {},
                data=data,
                allow_redirects=False,
                timeout=STREAM_TIMEOUT,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineConnectionError(self.connection_lost(exc)) from exc
        self._answered()
        return resp

    async def stream(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """`forward` to a path of the API version this engine speaks."""
        return await self.forward(method, self.client.api_prefix + path, **kwargs)

    async def forward_raw(self, head: bytes, body: bytes, *, head_only: bool) -> RawResponse:
        """A small request sent byte for byte over a pooled raw connection."""
        try:
            resp = await self.raw.send(head, body, head_only=head_only)
        except EngineConnectionError as exc:
            self.record_failure(str(exc))
            raise
        self._answered()
        return resp

    async def hijack(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh connection of its own, for a call that takes over the socket."""
        try:
            return await self.client.open_raw()
        except EngineConnectionError as exc:
            self.record_failure(str(exc))
            raise

    def connection_lost(self, exc: BaseException) -> str:
        """Count a broken connection against the engine; the text the client is shown."""
        text = connection_error_text(self.address, exc)
        self.record_failure(text)
        return text

    def _answered(self) -> None:
        if self.state is not EngineState.PENDING:
            self.record_success()

    # -- specs ------------------------------------------------------------------
    async def update_specs(self) -> None:
        version = await self.call("GET", "/version", versioned=False)
        self.client.set_api_version(str(version.get("ApiVersion", "")))
        info = await self.call("GET", "/info")
        specs = EngineSpecs(
            daemon_id=str(info.get("ID", "")),
            name=str(info.get("Name", "")),
            cpus=int(info.get("NCPU") or 0),
            memory=int(info.get("MemTotal") or 0),
            version=str(info.get("ServerVersion") or version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            min_api_version=str(version.get("MinAPIVersion", "")),
            os_type=str(info.get("OSType") or "linux"),
            labels=engine_labels(info),
        )
        system_time = parse_docker_time(info.get("SystemTime"))
        if system_time:
            skew = self.clock() - system_time
            specs.clock_skew = skew if abs(skew) >= 2 else 0.0
            if specs.clock_skew:
                log.warning(
                    "Engine %s has unsynchronized systime with swarm, please synchronize it.",
                    specs.name,
                )
        if (
            self.specs.daemon_id
            and specs.daemon_id != self.specs.daemon_id
            and self.state is not EngineState.PENDING
        ):
            self.state = EngineState.PENDING
            self.error = (
                f"Engine (ID: {self.specs.daemon_id}, Addr: {self.addr}) shows up with "
                f"another ID:{specs.daemon_id}. Please remove it from cluster, it can be "
                "added back."
            )
            raise ValueError(self.error)
        self.specs = specs
        self.specs_at = self.clock()

    # -- cache ------------------------------------------------------------------
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
        """Shift engine timestamps by the measured clock skew (spec 5.3)."""
        skew = self.specs.clock_skew
        if not skew:
            return
        from datetime import UTC, datetime

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
        self.listener.container_changed(self, old, container)

    def forget_container(self, cid: str) -> None:
        self._set_container(cid, None)

    def restore_container(self, container: Container) -> None:
        """Put back a container the watchdog dropped but could not move."""
        self._set_container(container.id, container)

    async def refresh_images(self) -> None:
        listing = await self.call("GET", "/images/json", params={"all": "1"}, timeout=30.0)
        self.images = [Image(item) for item in listing or []]
        self.image_index = ImageIndex(self.images)
        self.listener.images_changed(self)

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

    # -- events -----------------------------------------------------------------
    async def _monitor_events(self) -> None:
        """Follow `/events`, resuming from the last event seen after any break."""
        failures = 0
        while True:
            if self.state is EngineState.UNHEALTHY and not await self.recover():
                # No stream while unhealthy: replayed events would cache stale copies.
                failures += 1
                await asyncio.sleep(min(failures, 10))
                continue
            params = {"since": since_param(self._last_event_nano)}
            try:
                async for event in self.client.stream_lines("/events", params=params):
                    if failures:
                        failures = 0
                    self.record_success()
                    await self._handle_event(event)
                # A clean end of stream: the daemon is going away.
                raise EngineConnectionError(f"event stream of {self.addr} ended")
            except EngineConnectionError as exc:
                failures += 1
                self.record_failure(str(exc))
            except EngineError as exc:
                failures += 1
                log.warning("event stream of %s failed: %s", self.name, exc)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the monitor for good
                failures += 1
                log.exception("event monitor of %s crashed; restarting", self.name)
            await asyncio.sleep(min(failures, 10) if failures > 1 else 0.5)
            if self.state is EngineState.PENDING:
                # A changed daemon ID: keep probing so the error stays current.
                with contextlib.suppress(EngineConnectionError, EngineError, ValueError):
                    await self.update_specs()

    async def _handle_event(self, event: dict[str, Any]) -> None:
        if not (event.get("Action") or event.get("status")):
            return  # not an event: e.g. the fragment of one cut off by a dying engine
        if not self._seen_events.first_time(event):
            return  # replayed by a `since` resume: already handled and published
        nano = int(event.get("timeNano") or 0)
        if nano > self._last_event_nano:
            self._last_event_nano = nano
        kind = event.get("Type") or "container"
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        oid = str(actor.get("ID") or event.get("id") or "")
        try:
            if kind == "container" and oid:
                base = action.split(":", 1)[0]
                if base == "destroy":
                    self.forget_container(oid)
                elif base in REFRESH_EVENTS:
                    await self.refresh_container(oid)
                elif base not in QUIET_EVENTS:
                    await self.refresh_container(oid)
                if base == "commit":
                    await self.refresh_images()
            elif kind == "image":
                await self.refresh_images()
            elif kind == "network" and oid:
                await self.refresh_network(oid)
                if action in ("connect", "disconnect"):
                    cid = (actor.get("Attributes") or {}).get("container")
                    if cid:
                        await self.refresh_container(cid)
            elif kind == "volume":
                await self.refresh_volumes()
            elif kind == "daemon" and action == "reload":
                await self.update_specs()
        except EngineError as exc:
            log.debug("refresh after event %s/%s failed: %s", kind, action, exc)
        self.listener.engine_event(self, event)


def engine_labels(info: dict[str, Any]) -> dict[str, str]:
    """Built-in labels for constraints, then the daemon's own (spec 5.2)."""
    labels: dict[str, str] = {}
    for key, field_name in (
        ("storagedriver", "Driver"),
        ("kernelversion", "KernelVersion"),
        ("operatingsystem", "OperatingSystem"),
        ("ostype", "OSType"),
    ):
        if info.get(field_name):
            labels[key] = str(info[field_name])
    for entry in info.get("Labels") or []:
        key, sep, value = str(entry).partition("=")
        if not sep:
            raise ValueError(f"daemon label {entry!r} is not of the form key=value")
        if key == "node":
            log.warning("Engine label 'node' is reserved for the node name; ignored")
            continue
        if key in labels:
            log.warning("Engine label %r may not override a built-in label; ignored", key)
            continue
        labels[key] = value
    return labels
