"""The records a simulated engine holds (containers, images, networks, volumes, its spec)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shoal.sandbox.simulated.stamps import digest, docker_time

KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def key_id(seed: str) -> str:
    """A daemon ID in dockerd 20.10's format: 12 groups of 4 base32 characters."""
    raw = hashlib.sha512(seed.encode()).digest()
    chars = "".join(KEY_ALPHABET[b % 32] for b in raw[:48])
    return ":".join(chars[i:i + 4] for i in range(0, 48, 4))


def human_ago(seconds: float) -> str:
    """Go's `units.HumanDuration`, enough for the `Status` column."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = int(seconds / 3600)
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    return f"{hours // 24} days"


@dataclass(slots=True)
class SimContainer:
    """What differs between containers; the rest of the inspect comes from the template."""

    id: str
    name: str
    image: str
    image_id: str
    cmd: list[str]
    created: int
    labels: dict[str, str]
    env: list[str]
    memory: int = 0
    cpu_shares: int = 0
    nano_cpus: int = 0
    network_mode: str = "default"
    binds: list[str] = field(default_factory=list)
    ip_index: int = 0
    status: str = "created"
    pid: int = 0
    exit_code: int = 0
    started_at: int = 0
    finished_at: int = 0
    restart_count: int = 0
    restart_policy: str = "no"
    tty: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    def status_text(self, now: float) -> str:
        """The `Status` column of `docker ps`."""
        if self.status == "running":
            return "Up " + human_ago(now - self.started_at / 1e9)
        if self.status == "paused":
            return "Up " + human_ago(now - self.started_at / 1e9) + " (Paused)"
        if self.status == "exited":
            return f"Exited ({self.exit_code}) {human_ago(now - self.finished_at / 1e9)} ago"
        return self.status.capitalize()

    def mounts(self) -> list[dict[str, Any]]:
        out = []
        for bind in self.binds:
            source, _, rest = bind.partition(":")
            dest, _, mode = rest.partition(":")
            if source.startswith("/"):
                out.append({"Type": "bind", "Source": source, "Destination": dest, "Mode": mode,
                            "RW": "ro" not in mode.split(","), "Propagation": "rprivate"})
            else:
                out.append({"Type": "volume", "Name": source,
                            "Source": f"/var/lib/docker/volumes/{source}/_data",
                            "Destination": dest, "Driver": "local", "Mode": mode or "z",
                            "RW": "ro" not in mode.split(","), "Propagation": ""})
        return out

    def network_block(self, bridge_id: str, with_ip: bool) -> dict[str, Any]:
        ip = f"172.17.{self.ip_index // 250}.{self.ip_index % 250 + 2}" if with_ip else ""
        high, low = self.ip_index // 250, self.ip_index % 250 + 2
        mac = f"02:42:ac:11:{high:02x}:{low:02x}" if with_ip else ""
        endpoint = digest("ep", self.id) if with_ip else ""
        return {"IPAMConfig": None, "Links": None, "Aliases": None,
                "NetworkID": bridge_id if with_ip else "", "EndpointID": endpoint,
                "Gateway": "172.17.0.1" if with_ip else "", "IPAddress": ip,
                "IPPrefixLen": 16 if with_ip else 0, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": mac,
                "DriverOpts": None}


@dataclass(slots=True)
class SimImage:
    id: str
    tags: list[str]
    size: int
    created: int


@dataclass(slots=True)
class SimNetwork:
    id: str
    name: str
    driver: str
    created: int
    subnet: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        config = [{"Subnet": self.subnet}] if self.subnet else []
        return {"Name": self.name, "Id": self.id, "Created": docker_time(self.created),
                "Scope": "local", "Driver": self.driver, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": config},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
                "Options": {}, "Labels": dict(self.labels)}


@dataclass(slots=True)
class SimVolume:
    name: str
    created: int
    labels: dict[str, str] | None = None

    def document(self) -> dict[str, Any]:
        return {"CreatedAt": docker_time(self.created)[:19] + "Z", "Driver": "local",
                "Labels": self.labels, "Mountpoint": f"/var/lib/docker/volumes/{self.name}/_data",
                "Name": self.name, "Options": None, "Scope": "local"}


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Identity and size of one simulated engine."""

    index: int
    name: str
    daemon_id: str
    cpus: int
    memory: int
    labels: tuple[str, ...]


def engine_spec(index: int, seed: int = 0, labels: Iterable[str] = ()) -> EngineSpec:
    """Engines differ in size and zone, so scheduling over them is not trivial."""
    rng = random.Random(f"{seed}/{index}")
    cpus = rng.choice((2, 4, 8, 16))
    memory = cpus * rng.choice((2, 4)) * 1024**3
    zone = f"zone={'abc'[index % 3]}"
    disk = f"storage={'ssd' if index % 2 == 0 else 'hdd'}"
    return EngineSpec(index, f"node-{index}", key_id(f"{seed}/{index}"), cpus, memory,
                      (zone, disk, *labels))
