"""Consul backend (through py-consul's asyncio client): session-bound keys and locks.

Consul invalidates a session between one and two TTLs after its last renewal, and
accepts TTLs of 10 s or more; as in classic Swarm half the requested TTL is asked for
(at least 10 s). Registrations use "delete" sessions, the leader lock a "release" one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import consul
import consul.aio

from shoal.discovery.kv import KVTLS, KVURL, KVBackend, StoreError
from shoal.leadership.store import LockLost, LockStore

__all__ = ["ConsulBackend", "ConsulLock", "session_ttl"]

OP_TIMEOUT = 5.0
ACQUIRE_POLL = 5.0
MIN_SESSION_TTL = 10

T = TypeVar("T")


def session_ttl(ttl: float) -> int:
    """The session TTL to request for a wanted expiry of ``ttl`` seconds."""
    return max(MIN_SESSION_TTL, math.ceil(ttl / 2))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"consul: {text}"


class ConsulBackend(KVBackend):
    """One py-consul client (created on the running loop); rotates addresses on failure."""

    def __init__(self, url: KVURL, tls: KVTLS | None) -> None:
        self.url = url
        self.tls = tls
        self._index = 0
        self._agent: consul.aio.Consul | None = None
        self._session: str | None = None
        self._locks: list[ConsulLock] = []

    def agent(self) -> consul.aio.Consul:
        if self._agent is None:
            host, port = self.url.hosts[self._index % len(self.url.hosts)]
            if self.tls is not None:
                self._agent = consul.aio.Consul(
                    host=host, port=port, scheme="https", verify=self.tls.ca,
                    cert=(self.tls.cert, self.tls.key),
                )
            else:
                self._agent = consul.aio.Consul(host=host, port=port, scheme="http")
        return self._agent

    async def call(self, op: Callable[[consul.aio.Consul], Awaitable[T]],
                   timeout: float = OP_TIMEOUT) -> T:
        """One request; transport and server errors become StoreError (NotFound passes)."""
        agent = self.agent()
        try:
            async with asyncio.timeout(timeout):
                return await op(agent)
        except consul.NotFound:
            raise
        except (consul.ConsulException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            if len(self.url.hosts) > 1 and not isinstance(exc, consul.ConsulException):
                await self._rotate(agent)
            raise StoreError(_describe(exc)) from None

    async def _rotate(self, agent: Any) -> None:
        if id(self._agent) == id(agent):
            self._agent = None
            self._index += 1
            with contextlib.suppress(Exception):
                await agent.close()

    async def watch_tree(self, directory: str, period: float) -> AsyncIterator[list[str]]:
        prefix = directory.strip("/") + "/"
        index: Any = None
        wait = f"{max(1, math.ceil(period))}s"
        while True:
            index, items = await self.call(
                lambda c: c.kv.get(prefix, index=index, recurse=True, wait=wait),  # noqa: B023
                timeout=period + OP_TIMEOUT,
            )
            values = [
                (item.get("Value") or b"").decode()
                for item in items or []
                if not str(item.get("Key", "")).endswith("/") and item.get("Value")
            ]
            yield values

    async def put_ttl(self, key: str, value: str, ttl: float) -> None:
        seconds = session_ttl(ttl)
        if self._session is not None:
            try:
                await self.call(lambda c: c.session.renew(self._session))
            except consul.NotFound:
                self._session = None
        if self._session is None:
            self._session = await self.call(
                lambda c: c.session.create(behavior="delete", ttl=seconds, lock_delay=0)
            )
        session = self._session
        ok = await self.call(lambda c: c.kv.put(key.strip("/"), value, acquire=session))
        if not ok:
            raise StoreError(f"consul: cannot write {key} (held by another session)")

    def lock(self, key: str, value: str, ttl: float) -> LockStore:
        lock = ConsulLock(self, key.strip("/"), value, ttl)
        self._locks.append(lock)
        return lock

    async def close(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.close(), 2)


class ConsulLock:
    """``PUT ?acquire=<session>`` on the key; held while the session lives and owns it."""

    def __init__(self, backend: ConsulBackend, key: str, value: str, ttl: float) -> None:
        self.backend = backend
        self.key = key
        self.value = value
        self.ttl = session_ttl(ttl)
        self._session: str | None = None

    @property
    def guarantee(self) -> float:
        return float(self.ttl)

    async def _holder(self, index: Any = None) -> tuple[Any, str | None, str | None]:
        """(index, value, holding session) of the key; blocks for a change when ``index``."""
        wait = f"{math.ceil(ACQUIRE_POLL)}s"
        idx, item = await self.backend.call(
            lambda c: c.kv.get(self.key, index=index, wait=wait),
            timeout=ACQUIRE_POLL + OP_TIMEOUT,
        )
        if not item:
            return idx, None, None
        raw = item.get("Value")
        return idx, raw.decode() if raw else None, item.get("Session")

    async def acquire(self) -> None:
        backend = self.backend
        while True:
            if self._session is None:
                self._session = await backend.call(
                    lambda c: c.session.create(behavior="release", ttl=self.ttl, lock_delay=0)
                )
            session = self._session
            if await backend.call(lambda c: c.kv.put(self.key, self.value, acquire=session)):  # noqa: B023
                return
            index, _, holder = await self._holder()
            if holder is None:
                # Not held, yet refused: our session may be gone; start a new one.
                with contextlib.suppress(consul.NotFound):
                    await backend.call(lambda c: c.session.renew(session))  # noqa: B023
                    continue
                self._session = None
                continue
            while holder is not None:
                index, _, holder = await self._holder(index)

    async def renew(self) -> None:
        session = self._session
        if session is None:
            raise LockLost("no session")
        try:
            await self.backend.call(lambda c: c.session.renew(session))
        except consul.NotFound:
            self._session = None
            raise LockLost("session expired") from None
        _, _, holder = await self._holder()
        if holder != session:
            raise LockLost("key held by another session")

    async def release(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        with contextlib.suppress(consul.NotFound):
            await self.backend.call(lambda c: c.kv.put(self.key, self.value, release=session))
            await self.backend.call(lambda c: c.session.destroy(session))

    async def watch(self) -> AsyncIterator[str | None]:
        index: Any = None
        while True:
            index, value, holder = await self._holder(index)
            yield value if holder else None
