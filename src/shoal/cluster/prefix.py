"""Keys kept sorted, so that every key starting with a prefix is found by bisection.

Docker resolves a container by any unique prefix of its ID; a scan over every cached
container for each such lookup would cost as much as the cluster is large.
"""

from __future__ import annotations

import bisect


class SortedKeys:
    """A sorted set of strings with prefix lookup in O(log n + matches)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            keys.insert(i, key)

    def discard(self, key: str) -> None:
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]

    def with_prefix(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, in order."""
        keys = self._keys
        start = bisect.bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return keys[start:end]
