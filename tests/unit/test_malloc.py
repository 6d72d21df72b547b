"""The allocator setting the manager makes at start (glibc here: it must take)."""

from __future__ import annotations

from shoal.malloc import pin_mmap_threshold


def test_pin_mmap_threshold_takes_on_glibc() -> None:
    assert pin_mmap_threshold() is True
