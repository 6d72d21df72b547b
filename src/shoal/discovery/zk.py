"""ZooKeeper backend (through kazoo): ephemeral znodes for registrations and the leader lock.

kazoo runs its own I/O thread. Its ``*_async`` calls return results that complete in
that thread; ``_ZKConn.call`` links them to asyncio futures, so nothing on the event loop
blocks and no executor thread waits. A registration's TTL is the ZooKeeper session
timeout (the server may round it into its [2, 20] x tickTime range).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

from shoal.discovery.kv import KVTLS, KVURL, KVBackend, StoreError
from shoal.leadership.store import LockLost, LockStore

__all__ = ["ZKBackend", "ZKLock"]

OP_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
ACQUIRE_POLL = 5.0
DEFAULT_SESSION = 10.0

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"zk: {text}"


class _ZKConn:
    """One kazoo client (one ZooKeeper session), started lazily, retrying in the background."""

    def __init__(self, url: KVURL, session_timeout: float, tls: KVTLS | None) -> None:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.hosts)
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs = {"use_ssl": True, "ca": tls.ca, "certfile": tls.cert, "keyfile": tls.key}
        self.session_timeout = session_timeout
        kazoo_log = logging.getLogger(f"{__name__}.kazoo")
        kazoo_log.setLevel(logging.WARNING)  # its INFO lines would pollute `shoal list`
        self.client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            connection_retry={"max_tries": -1, "delay": 0.2, "backoff": 2, "max_delay": 1.0},
            logger=kazoo_log,
            **kwargs,
        )
        self._started = False
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_state(self, state: str) -> None:
        """kazoo thread: wake every waiter so it re-checks the connection."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in list(self._waiters):
            event.set()

    def waiter(self) -> asyncio.Event:
        """An event set on every connection state change (discard it with ``forget``)."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def trigger(self, event: asyncio.Event) -> Any:
        """A kazoo watch callback that sets ``event`` on the loop."""
        loop = asyncio.get_running_loop()

        def fire(_: object) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

        return fire

    async def connected(self) -> None:
        """Return once connected; StoreError if that takes longer than CONNECT_TIMEOUT."""
        if not self._started:
            self._loop = asyncio.get_running_loop()
            self.client.add_listener(self._on_state)
            self.client.start_async()
            self._started = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_TIMEOUT
        while not self.client.connected:
            if loop.time() >= deadline:
                raise StoreError(f"zk: cannot connect to {self.client.hosts}")
            await asyncio.sleep(0.05)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<name>_async(...)``, awaited without blocking; errors become StoreError
        (NoNodeError and NodeExistsError pass through for the caller to handle)."""
        await self.connected()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:
            if future.done():
                return
            try:
                future.set_result(result.get_nowait())
            except Exception as exc:
                future.set_exception(exc)

        def done(result: Any) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result)

        try:
            getattr(self.client, f"{name}_async")(*args, **kwargs).rawlink(done)
            async with asyncio.timeout(OP_TIMEOUT):
                return await future
        except (NoNodeError, NodeExistsError):
            raise
        except (KazooException, TimeoutError, OSError) as exc:
            raise StoreError(_describe(exc)) from None

    @property
    def session_id(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    async def close(self) -> None:
        if self._started:
            self._started = False
            client = self.client
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(_stop_client, client), 5)


def _stop_client(client: KazooClient) -> None:
    client.stop()
    client.close()


class ZKBackend(KVBackend):
    """Manager-side watch and join-side ephemeral registrations over one session."""

    def __init__(self, url: KVURL, ttl: float, tls: KVTLS | None) -> None:
        self.url = url
        self.tls = tls
        self.conn = _ZKConn(url, ttl if ttl > 0 else DEFAULT_SESSION, tls)
        self._locks: list[ZKLock] = []

    @staticmethod
    def path(key: str) -> str:
        return "/" + key.strip("/")

    async def watch_tree(self, directory: str, period: float) -> AsyncIterator[list[str]]:
        conn = self.conn
        path = self.path(directory)
        await conn.call("ensure_path", path)
        changed = conn.waiter()
        try:
            while True:
                changed.clear()
                children = await conn.call("get_children", path, watch=conn.trigger(changed))
                values: list[str] = []
                for child in sorted(children):
                    with contextlib.suppress(NoNodeError):
                        data, _ = await conn.call("get", f"{path}/{child}")
                        values.append(data.decode() if data else child)
                yield values
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), period)
                if not conn.client.connected:
                    raise StoreError(f"zk: connection to {conn.client.hosts} lost")
        except NoNodeError as exc:
            raise StoreError(_describe(exc)) from None
        finally:
            conn.forget(changed)

    async def put_ttl(self, key: str, value: str, ttl: float) -> None:
        conn = self.conn
        path = self.path(key)
        data = value.encode()
        try:
            await conn.call("create", path, data, ephemeral=True, makepath=True)
            return
        except NodeExistsError:
            pass
        try:
            current, stat = await conn.call("get", path)
            if stat.ephemeralOwner == conn.session_id:
                if current != data:
                    await conn.call("set", path, data)
                return
            # Left by an older session of some joiner: replace it with ours.
            await conn.call("delete", path)
            await conn.call("create", path, data, ephemeral=True, makepath=True)
        except (NoNodeError, NodeExistsError) as exc:
            raise StoreError(_describe(exc)) from None

    def lock(self, key: str, value: str, ttl: float) -> LockStore:
        lock = ZKLock(_ZKConn(self.url, ttl, self.tls), self.path(key), value, ttl)
        self._locks.append(lock)
        return lock

    async def close(self) -> None:
        for lock in self._locks:
            await lock.conn.close()
        await self.conn.close()


class ZKLock:
    """An ephemeral znode created if absent; held while our session owns it.

    The lock has its own session whose timeout is the replication TTL, so its expiry
    is the session's: a renew (any answered request) keeps it alive that long.
    """

    def __init__(self, conn: _ZKConn, path: str, value: str, ttl: float) -> None:
        self.conn = conn
        self.path = path
        self.value = value.encode()
        self.ttl = ttl

    @property
    def guarantee(self) -> float:
        return self.ttl

    async def acquire(self) -> None:
        conn = self.conn
        changed = conn.waiter()
        try:
            while True:
                try:
                    await conn.call("create", self.path, self.value, ephemeral=True, makepath=True)
                    return
                except NodeExistsError:
                    pass
                changed.clear()
                stat = await conn.call("exists", self.path, watch=conn.trigger(changed))
                if stat is not None and stat.ephemeralOwner == conn.session_id:
                    return
                if stat is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), ACQUIRE_POLL)
        except NoNodeError as exc:
            raise StoreError(_describe(exc)) from None
        finally:
            conn.forget(changed)

    async def renew(self) -> None:
        conn = self.conn
        if not conn.client.connected:
            raise StoreError("zk: not connected")
        stat = await conn.call("exists", self.path)
        if stat is None or stat.ephemeralOwner != conn.session_id:
            raise LockLost("leader znode is gone or owned by another session")

    async def release(self) -> None:
        conn = self.conn
        if not conn.client.connected:
            return
        with contextlib.suppress(NoNodeError):
            stat = await conn.call("exists", self.path)
            if stat is not None and stat.ephemeralOwner == conn.session_id:
                await conn.call("delete", self.path)

    async def watch(self) -> AsyncIterator[str | None]:
        conn = self.conn
        changed = conn.waiter()
        try:
            while True:
                changed.clear()
                fire = conn.trigger(changed)
                try:
                    data, _ = await conn.call("get", self.path, watch=fire)
                    value: str | None = data.decode() or None
                except NoNodeError:
                    value = None
                    if await conn.call("exists", self.path, watch=fire) is not None:
                        continue
                yield value
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), ACQUIRE_POLL)
                if not conn.client.connected:
                    raise StoreError(f"zk: connection to {conn.client.hosts} lost")
        finally:
            conn.forget(changed)
