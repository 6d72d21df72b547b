"""etcd v3 backend (through aetcd): leased keys for registrations and the leader lock.

With the ``kv.*file`` options the client speaks TLS and shows its certificate
(``TLSClient``); store errors become one-line StoreErrors that say what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions

from shoal.discovery.etcd_tls import EtcdCredentials, TLSClient
from shoal.discovery.kv import KVURL, KVBackend, StoreError
from shoal.leadership.store import LockLost, LockStore

__all__ = ["EtcdBackend", "EtcdLock"]

OP_TIMEOUT = 5.0
"""Bound on every unary etcd call, so a silent store shows up as an error."""
ACQUIRE_POLL = 5.0
"""How long a blocked acquire waits for a delete event before trying again anyway."""

T = TypeVar("T")


_GRPC_PREFIX = re.compile(
    r"^failed to connect to all addresses; last error: [A-Z_]+: (?:ipv[46]:\S+: |unix:\S+: )?"
)
# What gRPC's terse transport errors mean, by connection kind (TLS or plaintext).
_TLS_HINTS = (
    ("TSI_DATA_CORRUPTED", "the store refused the client certificate (kv.certfile)"),
    ("BAD_CERTIFICATE", "the store refused the client certificate (kv.certfile)"),
    ("CERTIFICATE_REQUIRED", "the store refused the client certificate (kv.certfile)"),
    ("certificate signature failure", "the store's certificate is not signed by kv.cacertfile"),
    ("CERTIFICATE_VERIFY_FAILED", "the store's certificate is not signed by kv.cacertfile"),
    ("Hostname Verification", "the store's certificate does not name this address"),
    ("WRONG_VERSION_NUMBER", "the store does not speak TLS on this address"),
    ("Handshake read failed", "the store broke off the TLS handshake; does it speak TLS?"),
)
_PLAIN_HINTS = (
    ("Socket closed", "does the store require TLS? Give --discovery-opt kv.cacertfile, "
     "kv.certfile and kv.keyfile"),
)


def describe(exc: BaseException, addr: str, tls: bool) -> str:
    """One line for an etcd failure: the address, gRPC's reason and what it likely means."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, TimeoutError | aetcd.exceptions.ConnectionTimeoutError):
        return f"etcd: no answer from {addr} in time ({text})"
    if not isinstance(exc, aetcd.exceptions.ConnectionFailedError):
        return f"etcd: {text}"
    reason = _GRPC_PREFIX.sub("", text)
    for needle, hint in _TLS_HINTS if tls else _PLAIN_HINTS:
        if needle in reason:
            return f"etcd: cannot connect to {addr}: {hint} ({reason})"
    return f"etcd: cannot connect to {addr}: {reason}"


class EtcdBackend(KVBackend):
    """One aetcd client (over TLS when given credentials); on a connection failure the
    next address is tried."""

    def __init__(
        self,
        url: KVURL,
        credentials: EtcdCredentials | None = None,
        op_timeout: float = OP_TIMEOUT,
    ) -> None:
        self.url = url
        self.credentials = credentials
        self.op_timeout = op_timeout
        self._index = 0
        self._client: aetcd.Client | None = None
        self._lease: Any = None
        self._lease_ttl = 0

    @property
    def addr(self) -> str:
        """The address the current (or next) client dials."""
        host, port = self.url.hosts[self._index % len(self.url.hosts)]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def client(self) -> aetcd.Client:
        if self._client is None:
            host, port = self.url.hosts[self._index % len(self.url.hosts)]
            if self.credentials is not None:
                self._client = TLSClient(host, port, self.credentials, self.op_timeout)
            else:
                self._client = aetcd.Client(host, port, timeout=self.op_timeout)
        return self._client

    def describe(self, exc: BaseException) -> str:
        return describe(exc, self.addr, self.credentials is not None)

    async def call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run one call on the client; failures become StoreError (and rotate addresses)."""
        client = self.client()
        try:
            async with asyncio.timeout(self.op_timeout + 1):
                return await op(client)
        except (aetcd.exceptions.ClientError, TimeoutError, OSError) as exc:
            message = self.describe(exc)
            if len(self.url.hosts) > 1 and isinstance(
                exc, aetcd.exceptions.ConnectionFailedError | TimeoutError
            ):
                await self._rotate(client)
            raise StoreError(message) from None

    async def _rotate(self, client: Any) -> None:
        if id(self._client) == id(client):
            self._client = None
            self._index += 1
            with contextlib.suppress(Exception):
                await client.close()

    async def changes(
        self, key: bytes, range_end: bytes | None, start_revision: int, period: float
    ) -> AsyncIterator[None]:
        """A tick after each batch of events on the range, and at least every ``period``
        (so the caller re-reads and a dead store is noticed); raises StoreError."""
        client = self.client()
        try:
            watch = await client.watch(key, range_end=range_end, start_revision=start_revision)
        except (aetcd.exceptions.ClientError, OSError) as exc:
            raise StoreError(self.describe(exc)) from None
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for event in watch:
                    queue.put_nowait(event)
                queue.put_nowait(StoreError("etcd: watch closed"))
            except Exception as exc:
                queue.put_nowait(StoreError(self.describe(exc)))

        task = asyncio.create_task(pump(), name="etcd watch")
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), period)
                except TimeoutError:
                    yield None
                    continue
                items = [item]
                while not queue.empty():
                    items.append(queue.get_nowait())
                for it in items:
                    if isinstance(it, StoreError):
                        raise it
                yield None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 1)

    async def watch_tree(self, directory: str, period: float) -> AsyncIterator[list[str]]:
        prefix = (directory.rstrip("/") + "/").encode()
        result = await self.call(lambda c: c.get_prefix(prefix))
        yield [kv.value.decode() for kv in result]
        async for _ in self.changes(
            prefix, aetcd.utils.prefix_range_end(prefix), result.header.revision + 1, period
        ):
            result = await self.call(lambda c: c.get_prefix(prefix))
            yield [kv.value.decode() for kv in result]

    async def put_ttl(self, key: str, value: str, ttl: float) -> None:
        seconds = max(1, math.ceil(ttl))
        if self._lease is not None and self._lease_ttl == seconds:
            reply = await self.call(lambda c: c.refresh_lease(self._lease.id))
            if reply is None or reply.TTL <= 0:
                self._lease = None
        if self._lease is None or self._lease_ttl != seconds:
            self._lease = await self.call(lambda c: c.lease(seconds))
            self._lease_ttl = seconds
        lease = self._lease
        await self.call(lambda c: c.put(key.encode(), value.encode(), lease=lease))

    def lock(self, key: str, value: str, ttl: float) -> LockStore:
        return EtcdLock(self, key, value, ttl)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)


class EtcdLock:
    """Create-if-absent in a transaction, the key bound to a lease kept alive by renew()."""

    def __init__(self, backend: EtcdBackend, key: str, value: str, ttl: float) -> None:
        self.backend = backend
        self.key = key.encode()
        self.value = value.encode()
        self.ttl = max(1, math.ceil(ttl))
        self._lease: Any = None
        self._granted = float(self.ttl)

    @property
    def guarantee(self) -> float:
        return self._granted

    async def _read(self) -> tuple[bytes | None, int]:
        """The key's value (None if absent) and the store revision of the read."""
        end = self.key + b"\0"
        result = await self.backend.call(lambda c: c.get_range(self.key, end))
        value = next((kv.value for kv in result), None)
        return value, result.header.revision

    async def acquire(self) -> None:
        backend = self.backend
        while True:
            lease = await backend.call(lambda c: c.lease(self.ttl))
            ok, _ = await backend.call(
                lambda c: c.transaction(
                    compare=[c.transactions.create(self.key) == 0],
                    success=[c.transactions.put(self.key, self.value, lease=lease)],  # noqa: B023
                    failure=[],
                )
            )
            if ok:
                self._lease = lease
                self._granted = float(min(lease.ttl, self.ttl)) if lease.ttl else self._granted
                return
            with contextlib.suppress(StoreError):
                await backend.call(lambda c: c.revoke_lease(lease.id))  # noqa: B023
            _, revision = await self._read()
            # Wait for the holder's key to go (or poll again after a while).
            async for _ in backend.changes(self.key, None, revision + 1, ACQUIRE_POLL):
                value, _ = await self._read()
                if value is None:
                    break

    async def renew(self) -> None:
        lease = self._lease
        if lease is None:
            raise LockLost("no lease")
        reply = await self.backend.call(lambda c: c.refresh_lease(lease.id))
        if reply is None or reply.TTL <= 0:
            self._lease = None
            raise LockLost("lease expired")

    async def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await self.backend.call(lambda c: c.revoke_lease(lease.id))

    async def watch(self) -> AsyncIterator[str | None]:
        value, revision = await self._read()
        yield value.decode() if value is not None else None
        async for _ in self.backend.changes(self.key, None, revision + 1, ACQUIRE_POLL):
            value, _ = await self._read()
            yield value.decode() if value is not None else None
