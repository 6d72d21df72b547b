"""glibc's allocator pinned for a server that reads request bodies of any size.

glibc serves large allocations with mmap and gives them back on free, but after freeing one
it raises its mmap threshold to that size (up to 32 MiB): from then on, bodies of a few
hundred KB to a few MB come from the heap, which fragments and is not returned. 1,500
malformed create bodies of varying sizes held the manager's RSS 56 MB above where it
started; with the threshold pinned (which turns the adjustment off) it came back.
"""

from __future__ import annotations

import ctypes
from typing import Final

M_MMAP_THRESHOLD: Final = -3
DEFAULT_THRESHOLD: Final = 128 * 1024
"""glibc's own initial value."""


def pin_mmap_threshold(size: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `size`; False where the C library has no `mallopt`."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, size))
