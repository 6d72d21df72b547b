"""CPU and memory accounting in classic Swarm's units: CPUs are counted, not shared."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def requested_resources(config: Mapping[str, Any]) -> tuple[int, int]:
    """(cpus, memory bytes) a create/build config reserves.

    `HostConfig.CpuShares` is a CPU count (classic Swarm's convention); `NanoCpus`
    (`docker run --cpus`) is honoured when no shares are given. Legacy top-level
    `Memory`/`CpuShares` win when non-zero, as in the create route.
    """
    hc = config.get("HostConfig") or {}
    memory = _int(config.get("Memory")) or _int(hc.get("Memory"))
    cpus = _int(config.get("CpuShares")) or _int(hc.get("CpuShares"))
    if cpus == 0:
        nano = _int(hc.get("NanoCpus"))
        if nano > 0:
            cpus = math.ceil(nano / 1_000_000_000)
    return max(cpus, 0), max(memory, 0)


def container_cpus(host_config: Mapping[str, Any], engine_cpus: int) -> int:
    """CPUs an existing container reserves, read back from its inspect HostConfig.

    Real shares convert back as `shares*engineNCPU/1024` (integer division); a
    `NanoCpus` limit counts as its ceiling. The larger reading wins.
    """
    shares = _int(host_config.get("CpuShares")) * engine_cpus // 1024
    nano = _int(host_config.get("NanoCpus"))
    return max(shares, math.ceil(nano / 1_000_000_000) if nano > 0 else 0, 0)


def engine_cpu_shares(cpus: int, engine_cpus: int) -> int:
    """Real CPU shares sent to an engine for a container reserving `cpus` CPUs."""
    if cpus <= 0 or engine_cpus <= 0:
        return 0
    return math.ceil(cpus * 1024 / engine_cpus)


def with_overcommit(total: int, overcommit: float) -> int:
    """Engine total including overcommit: `total + total*pct/100`, pct = int(overcommit*100)."""
    pct = int(overcommit * 100)
    return total + total * pct // 100
