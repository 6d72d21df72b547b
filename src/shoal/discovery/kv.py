"""Key-value store discovery (etcd, ZooKeeper, Consul): URL layout, backend interface, watch.

Classic Swarm's layout: engines register ``<prefix>/<kv.path>/<host:port>``
with a TTL; managers watch that directory; the leader lock lives at
``<prefix>/docker/swarm/leader``. One ``KVBackend`` per store does the store-specific
work; ``KVDiscovery`` turns its directory watch into the ``Discovery`` interface,
keeping the watch alive across store outages.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from shoal.discovery.base import Discovery, DiscoveryError, parse_entries
from shoal.leadership.store import LockStore

__all__ = [
    "DEFAULT_NODE_PATH",
    "KVTLS",
    "KVURL",
    "LEADER_PATH",
    "KVBackend",
    "KVDiscovery",
    "StoreError",
    "parse_kv_url",
    "tls_from_options",
]

log = logging.getLogger(__name__)

DEFAULT_NODE_PATH = "docker/swarm/nodes"
LEADER_PATH = "docker/swarm/leader"


class StoreError(Exception):
    """The store could not be reached or refused an operation; callers retry."""


@dataclass(frozen=True)
class KVTLS:
    """Client certificate and CA for the store (all three ``kv.*file`` options given)."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class KVURL:
    """``etcd://h1:p1,h2/prefix`` split up: store addresses (with default ports) and prefix."""

    scheme: str
    hosts: list[tuple[str, int]]
    prefix: str

    def key(self, path: str) -> str:
        """``prefix/path`` with no empty segments (path.Join semantics, no leading slash)."""
        parts = [p for p in f"{self.prefix}/{path}".split("/") if p]
        return "/".join(parts)


_DEFAULT_PORTS = {"etcd": 2379, "zk": 2181, "consul": 8500}


def parse_kv_url(scheme: str, rest: str) -> KVURL:
    """Parse the part after ``scheme://``; raises DiscoveryError on a bad address."""
    addrs, _, prefix = rest.partition("/")
    hosts: list[tuple[str, int]] = []
    for item in addrs.split(","):
        item = item.strip()
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        if not colon or "]" in port:
            host, port = item, str(_DEFAULT_PORTS[scheme])
        host = host.strip("[]")
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise DiscoveryError(f"invalid {scheme} address: {item!r}")
        hosts.append((host, int(port)))
    if not hosts:
        raise DiscoveryError(f"{scheme}: no store address given")
    return KVURL(scheme, hosts, prefix.strip("/"))


def tls_from_options(options: Mapping[str, str]) -> KVTLS | None:
    """TLS to the store only when ``kv.cacertfile``, ``kv.certfile`` and ``kv.keyfile`` are set."""
    ca = options.get("kv.cacertfile", "")
    cert = options.get("kv.certfile", "")
    key = options.get("kv.keyfile", "")
    if ca and cert and key:
        log.debug("Initializing discovery with TLS")
        return KVTLS(ca, cert, key)
    log.debug("Initializing discovery without TLS")
    return None


class KVBackend(abc.ABC):
    """One store connection: directory watch, TTL registration, and leader locks."""

    @abc.abstractmethod
    def watch_tree(self, directory: str, period: float) -> AsyncIterator[list[str]]:
        """Yield the values under ``directory`` now and after each change.

        Creates the directory if missing. ``period`` bounds how long a silent store
        goes unchecked. Raises StoreError when the store fails; the caller re-watches.
        """

    @abc.abstractmethod
    async def put_ttl(self, key: str, value: str, ttl: float) -> None:
        """Write ``key`` so that it disappears ``ttl`` seconds after the last write."""

    @abc.abstractmethod
    def lock(self, key: str, value: str, ttl: float) -> LockStore:
        """A TTL lock on ``key`` holding ``value`` while held (leader election)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections (and with them ephemeral keys and sessions)."""


class KVDiscovery(Discovery):
    """Discovery over a KVBackend: full entry lists on change, DiscoveryError on failure."""

    def __init__(
        self,
        backend: KVBackend,
        url: KVURL,
        heartbeat: float,
        ttl: float,
        node_path: str = DEFAULT_NODE_PATH,
    ) -> None:
        self.backend = backend
        self.url = url
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.directory = url.key(node_path)
        self._closed = asyncio.Event()

    @property
    def leader_key(self) -> str:
        return self.url.key(LEADER_PATH)

    async def _pause(self) -> bool:
        """Sleep one heartbeat; False once closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), self.heartbeat)
        return not self._closed.is_set()

    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        last: list[str] | None = None
        while not self._closed.is_set():
            error: DiscoveryError
            try:
                async for values in self._until_closed(
                    self.backend.watch_tree(self.directory, self.heartbeat)
                ):
                    try:
                        entries = sorted(set(parse_entries(values)))
                    except ValueError as exc:
                        yield DiscoveryError(str(exc))
                        continue
                    if entries != last:
                        last = entries
                        yield list(entries)
                if self._closed.is_set():
                    return
                error = DiscoveryError("Unexpected watch error")
            except StoreError as exc:
                error = DiscoveryError(str(exc))
            if self._closed.is_set():
                return
            last = None  # after an outage, report the list again even if unchanged
            yield error
            if not await self._pause():
                return

    async def _until_closed(self, source: AsyncIterator[list[str]]) -> AsyncIterator[list[str]]:
        """Items of ``source`` until it ends or ``close()`` is called."""
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while True:
                item = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({item, closed}, return_when=asyncio.FIRST_COMPLETED)
                if item not in done:
                    item.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await item
                    return
                try:
                    yield item.result()
                except StopAsyncIteration:
                    return
        finally:
            closed.cancel()
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def register(self, addr: str) -> None:
        try:
            await self.backend.put_ttl(f"{self.directory}/{addr}", addr, self.ttl)
        except StoreError as exc:
            raise DiscoveryError(str(exc)) from None

    def leader_lock(self, advertise: str, ttl: float) -> LockStore:
        """The replication lock for this discovery's prefix."""
        return self.backend.lock(self.leader_key, advertise, ttl)

    async def close(self) -> None:
        self._closed.set()
        await self.backend.close()
