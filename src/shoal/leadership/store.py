"""The leader-lock interface each store backend implements (etcd, ZooKeeper, Consul)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

__all__ = ["LockLost", "LockStore"]


class LockLost(Exception):
    """The store says the lock is no longer ours (expired or taken)."""


class LockStore(Protocol):
    """A TTL lock on one key whose value names the holder.

    Store failures raise ``shoal.discovery.kv.StoreError`` (or any ``Exception``);
    the candidate treats every failure as "not confirmed" and retries.
    """

    @property
    def guarantee(self) -> float:
        """Seconds the lock is guaranteed to stay ours after a ``renew()`` (or ``acquire()``)
        call that succeeded was *sent*: the store cannot expire it sooner."""
        ...

    async def acquire(self) -> None:
        """Block until the lock is held by us (then its value is our address)."""
        ...

    async def renew(self) -> None:
        """Extend the lock; raises LockLost if it is not ours any more."""
        ...

    async def release(self) -> None:
        """Give the lock up (best effort); the next ``acquire()`` starts afresh."""
        ...

    def watch(self) -> AsyncIterator[str | None]:
        """The lock's value now and after each change (None: nobody holds it).

        Ends or raises when the store fails; the follower re-watches.
        """
        ...
