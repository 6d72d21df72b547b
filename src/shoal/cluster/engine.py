"""One dockerd as the cluster sees it: health, identity, and a cache kept current by events.

An engine is Healthy once its specs and container list are in; full inspects follow in
the background. It owns its background tasks once validated: the refresh loop (a probe
each round and a reconciliation every few, jittered so a thousand engines are not polled
at once), the event monitor (the engine's `/events` stream, resumed with `since` after a
break so no event is lost) and the background inspects. All are cancelled by `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from shoal.cluster.client import (
    READ_TIMEOUT,
    EngineAddress,
    EngineClient,
    connection_error_text,
)
from shoal.cluster.engine_cache import InspectQueue
from shoal.cluster.engine_events import EventMonitor
from shoal.cluster.engine_health import EngineHealth
from shoal.cluster.engine_state import EngineListener, EngineSettings, EngineState
from shoal.cluster.errors import EngineConnectionError, EngineFailure, NotFound
from shoal.cluster.passthrough import RawPool, RawResponse
from shoal.cluster.records import EngineSpecs, parse_docker_time
from shoal.logs import fields

log = logging.getLogger(__name__)

#: Streams (logs, pulls, uploads) last as long as they last; only connecting is bounded.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=None)

SPECS_MAX_AGE = 300.0
#: Every this many refresh rounds the cache is reconciled with full lists; the rounds
#: between are a probe only (the event stream keeps the cache current meanwhile).
RECONCILE_EVERY = 4


class Engine(EngineHealth):
    """A Docker engine: its connection, state machine and cached objects."""

    def __init__(
        self,
        address: EngineAddress,
        client: EngineClient,
        settings: EngineSettings,
        listener: EngineListener,
        *,
        clock: Callable[[], float] = time.time,
        inspect_slots: InspectQueue | None = None,
    ) -> None:
        self.address = address
        self.client = client
        self.raw: RawPool = client.raw
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
        self._init_cache()
        #: Shared by the cluster's engines: bounds background inspects cluster-wide.
        self.inspect_slots = inspect_slots or InspectQueue()
        self._filler: asyncio.Task[None] | None = None
        self.monitor = EventMonitor(self)
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
        """Classic Swarm's engine ID: the daemon ID and the address (cluster/engine.go, `ID`)."""
        return f"{self.specs.daemon_id}|{self.addr}" if self.specs.daemon_id else ""

    @property
    def log_fields(self) -> dict[str, dict[str, object]]:
        """The `extra=` of a log line about this engine: its name and address."""
        return fields(engine=self.name, addr=self.addr)

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
        self._spawn(self._follow_events(), f"events {self.address.entry}")
        self._spawn(self._probe_loop(), f"probe {self.address.entry}")
        await self._refresh_loop()

    async def _follow_events(self) -> None:
        """The event stream, opened once the cluster's first validations are done (so
        thousands of streams do not slow adoption); `since` replays what came meanwhile."""
        await self.inspect_slots.quiet()
        await self.monitor.run()

    async def _validate_until_done(self) -> None:
        """Pending engines are retried with backoff until they answer like an engine."""
        attempt = 0
        while True:
            try:
                if attempt:
                    await self._validate()
                else:
                    self.inspect_slots.adoption_started()
                    try:
                        await self._validate()
                    finally:
                        self.inspect_slots.adoption_ended()
                return
            except (EngineFailure, ValueError) as exc:
                attempt += 1
                self.error = str(exc)
                self.updated_at = self.clock()
                log.warning("engine %s validation failed: %s", self.address.entry, exc,
                            extra=self.log_fields)
                delay = min(self.settings.refresh_min * (2 ** min(attempt - 1, 8)), 3600.0)
                await asyncio.sleep(delay * (0.9 + 0.2 * random.random()))

    async def _validate(self) -> None:
        await self.update_specs()
        if not self.specs.cpus or not self.specs.memory:
            raise ValueError(
                "cannot get resources for this engine, make sure "
                f"{self.addr} is a Docker Engine, not a Swarm manager"
            )
        self.monitor.last_nano = int(self.clock() * 1e9)
        listing = await self.remove_duplicates(newer_only=True)
        # Healthy once the list is in: full inspects follow in the background
        # (`fill_inspects`), the list entries serving until each arrives.
        await self.refresh_containers(listing)
        await self.refresh_images()
        duplicate = self.listener.engine_validated(self)
        if duplicate:
            raise ValueError(duplicate)
        self.state = EngineState.HEALTHY
        self.failure_count = 0
        self.error = ""
        log.info("Registered Engine %s at %s", self.name, self.addr, extra=self.log_fields)
        self.listener.engine_state_changed(self, "engine_connect")
        self._spawn(self._complete_adoption(), f"adopt {self.address.entry}")

    async def _complete_adoption(self) -> None:
        """What Healthy did not wait for: networks, volumes, then the full inspects."""
        try:
            await self.refresh_networks()
            await self.refresh_volumes()
        except EngineFailure as exc:
            log.debug("first refresh of %s failed: %s", self.name, exc)
        self._inspects_wanted()

    def _inspects_wanted(self) -> None:
        if self.listed and (self._filler is None or self._filler.done()):
            self._filler = self._spawn(self.fill_inspects(), f"inspects {self.address.entry}")

    async def inspects_done(self) -> None:
        """Wait until no cached container is a list entry only (scheduling reads the
        reservations of every container)."""
        while self.listed and self.state is not EngineState.PENDING:
            filler = self._filler
            if filler is None or filler.done():
                for cid in list(self.listed):
                    container = self.containers.get(cid)
                    if container is not None:
                        with contextlib.suppress(EngineFailure, NotFound):
                            await self.inspected(container)
                return
            await asyncio.wait({filler})

    async def _refresh_loop(self) -> None:
        rounds = 0
        while True:
            backoff = min(max(self.failure_count - self.settings.failure_retry, 0), 1000)
            spread = max(self.settings.refresh_max - self.settings.refresh_min, 0.0)
            delay = self.settings.refresh_min * (1 + backoff) + random.random() * spread
            self._wake.clear()
            # A timer that sets the event: no wait_for task per round, for thousands of engines.
            timer = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            if self.state is EngineState.UNHEALTHY:
                await self.recover()
                continue
            rounds += 1
            try:
                await self.refresh_once(reconcile=rounds % RECONCILE_EVERY == 0)
            except EngineFailure as exc:
                log.debug("refresh of %s failed: %s", self.name, exc, extra=self.log_fields)
                self.settings.telemetry.engine_refresh_failed(self.name, self.addr)

    async def refresh_once(self, *, reconcile: bool) -> None:
        """One round of the refresh loop: the health check, then (every few rounds) a
        reconciliation, which costs one list call per kind when nothing changed. The probe
        loop checks health when it runs (`--engine-probe-timeout`); this does otherwise."""
        if not self.healthy or self.clock() - self.specs_at > SPECS_MAX_AGE:
            await self.update_specs()
        elif not reconcile and self.settings.probe_timeout <= 0:
            await self.probe()
        if reconcile:
            await self.refresh_all()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An engine call whose outcome feeds the health counters."""
        try:
            result = await self.client.call(method, path, **kwargs)
        except EngineConnectionError as exc:
            self.record_failure(str(exc))
            raise
        self._answered()
        return result

    async def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        versioned: bool = True,
        timeout: float = READ_TIMEOUT,
    ) -> Any:
        """A cheap JSON read (`EngineClient.get`) whose outcome feeds the health counters."""
        try:
            result = await self.client.get(path, params, versioned=versioned, timeout=timeout)
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
        version = await self.get("/version", versioned=False)
        self.client.set_api_version(str(version.get("ApiVersion", "")))
        info = await self.get("/info")
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
                    extra=fields(engine=specs.name, addr=self.addr),
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

def engine_labels(info: dict[str, Any]) -> dict[str, str]:
    """Built-in labels for constraints, then the daemon's own (cluster/engine.go, `updateSpecs`)."""
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


__all__ = ["Engine", "EngineListener", "EngineSettings", "EngineState", "engine_labels"]
