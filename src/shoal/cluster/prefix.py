"""Keys kept sorted, so that every key starting with a prefix is found by bisection.

Docker resolves a container by any unique prefix of its ID; a scan over every cached
container for each such lookup would cost as much as the cluster is large.
"""

from __future__ import annotations

import itertools

from sortedcontainers import SortedSet


class SortedKeys:
    """A sorted set of strings with prefix lookup in O(log n + matches).

    A `SortedSet`, not a plain list: inserting into a sorted list moves every later key,
    which made adopting 150,000 containers quadratic.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys = SortedSet()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        self._keys.add(key)

    def discard(self, key: str) -> None:
        self._keys.discard(key)

    def with_prefix(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, in order."""
        keys = self._keys.irange(minimum=prefix)
        return [str(k) for k in itertools.takewhile(lambda k: k.startswith(prefix), keys)]
