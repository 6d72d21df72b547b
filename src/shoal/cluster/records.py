"""Cached engine objects, parsed once at the edge so reads never re-walk raw JSON."""

from __future__ import annotations

import math
import re
import sys
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from shoal.cluster.prefix import SortedKeys
from shoal.scheduler.resources import container_cpus

SWARM_ID_LABEL = "com.docker.swarm.id"


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def parse_docker_time(value: str | None) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, which `fromisoformat` refuses."""
    if not value or value.startswith("0001-01-01"):
        return 0.0
    match = _TIME_RE.match(value)
    if not match:
        return 0.0
    whole, frac, zone = match.groups()
    stamp = datetime.fromisoformat(whole + (zone if zone and zone != "Z" else "+00:00"))
    return stamp.timestamp() + (float("0" + frac) if frac else 0.0)


def human_duration(seconds: float) -> str:
    """Docker's go-units HumanDuration, so `docker ps` reads the same through shoal."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def container_status(state: dict[str, Any], now: float) -> str:
    """The `Status` column, computed at read time: a cached string would go stale."""
    status = state.get("Status", "")
    if status == "running" or state.get("Running"):
        if state.get("Restarting"):
            ago = human_duration(now - parse_docker_time(state.get("FinishedAt")))
            return f"Restarting ({state.get('ExitCode', 0)}) {ago} ago"
        up = f"Up {human_duration(now - parse_docker_time(state.get('StartedAt')))}"
        if state.get("Paused"):
            return up + " (Paused)"
        health = (state.get("Health") or {}).get("Status")
        if health and health != "none":
            return f"{up} ({'health: starting' if health == 'starting' else health})"
        return up
    if status == "restarting":
        ago = human_duration(now - parse_docker_time(state.get("FinishedAt")))
        return f"Restarting ({state.get('ExitCode', 0)}) {ago} ago"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "created":
        return "Created"
    if status == "exited" or parse_docker_time(state.get("FinishedAt")):
        ago = human_duration(now - parse_docker_time(state.get("FinishedAt")))
        return f"Exited ({state.get('ExitCode', 0)}) {ago} ago"
    return ""


def duration_stale_at(seconds: float) -> float:
    """The elapsed time at which `human_duration(seconds)` may first read differently."""
    if seconds < 1:
        return 1.0
    if seconds < 60:
        return float(int(seconds) + 1)
    minutes = int(seconds / 60)
    if minutes < 60:
        return float((minutes + 1) * 60)
    return (round(seconds / 3600) + 0.5) * 3600


def status_stale_at(state: dict[str, Any], now: float) -> float:
    """Until when `container_status(state, now)` stays what it is now: lists keep the
    encoded Status and rework it only then, not for every container on every request."""
    status = state.get("Status", "")
    if status == "running" or state.get("Running"):
        key = "FinishedAt" if state.get("Restarting") else "StartedAt"
    elif status == "restarting":
        key = "FinishedAt"
    elif status in ("removing", "dead", "created"):
        return math.inf
    elif status == "exited" or parse_docker_time(state.get("FinishedAt")):
        key = "FinishedAt"
    else:
        return math.inf
    ref = parse_docker_time(state.get(key))
    return ref + duration_stale_at(now - ref)


def bytes_size(n: float) -> str:
    """go-units BytesSize ("20 MiB", "2.053 GiB"), as classic Swarm prints reservations."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    value = float(n)
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    text = f"{value:.4g}"
    return f"{text} {units[i]}"


#: The HostConfig keys the scheduler and the reservations read; the rest stays packed.
PLACEMENT_HOST_KEYS = ("NetworkMode", "PortBindings", "CpuShares", "NanoCpus", "Memory")


#: What packing starts from: a dockerd 20.10 inspect of a plain `docker run -d` (paths
#: as under /var/lib/docker). Inspects share most of their keys and defaults, so
#: compressing against it takes a simulated inspect from 4.2 KB to about 0.45 KB (1.7 KB
#: without it). It is part of the format: changing it changes how records unpack, which
#: only matters within one process.
PACKING_DICTIONARY = (resources.files(__package__) / "inspect_template.json").read_bytes()

#: The `State` keys cached records keep (what `container_status`, the counts and the
#: list filters read); the full State stays in the packed inspect.
LIGHT_STATE_KEYS = (
    "Status", "Running", "Paused", "Restarting", "ExitCode", "StartedAt", "FinishedAt",
)  # fmt: skip


def _pack(inspect: dict[str, Any]) -> bytes:
    packer = zlib.compressobj(1, zdict=PACKING_DICTIONARY)
    return packer.compress(orjson.dumps(inspect)) + packer.flush()


def _unpack(packed: bytes) -> dict[str, Any]:
    unpacker = zlib.decompressobj(zdict=PACKING_DICTIONARY)
    doc = orjson.loads(unpacker.decompress(packed) + unpacker.flush())
    return doc if isinstance(doc, dict) else {}


def _light_state(state: dict[str, Any]) -> dict[str, Any]:
    """What reads of every container need of `State`: its status, exit code and times, and
    the health status without the check's output log."""
    light = {k: _shared(state[k]) for k in LIGHT_STATE_KEYS if k in state}
    health = state.get("Health")
    if isinstance(health, dict):
        light["Health"] = {"Status": _shared(health.get("Status", ""))}
    return light


def _shared(value: Any) -> Any:
    """Strings repeated across containers (statuses, image names, the zero time) as one
    object each."""
    return sys.intern(value) if type(value) is str and len(value) <= 128 else value


class Container:
    """One container as its engine last reported it (a full inspect), kept compact.

    A full inspect is about 14 KB as Python objects, and 30,000 of them were most of the
    manager's memory. So the record keeps decoded only what indexes, counts, lists and
    the scheduler read for every container (identity, state, labels, image, the
    placement keys of HostConfig) and packs the whole document (zlib'd JSON, about
    1.7 KB); `inspect` decodes it for the reads that need all of it. Records are never
    changed in place: a change is a new record.
    """

    __slots__ = (
        "_packed", "created", "engine_cpus", "exec_ids", "exposed_ports", "host_placement",
        "id", "image", "image_id", "labels", "name", "network_ports", "state",
    )  # fmt: skip

    id: str
    #: The name with its leading slash, as engines store it.
    name: str
    created: float
    #: What the container was created from (`Config.Image`), and the image's ID.
    image: str
    image_id: str
    #: `State`, without the health check's log.
    state: dict[str, Any]
    labels: dict[str, str]
    #: `HostConfig` reduced to `PLACEMENT_HOST_KEYS`.
    host_placement: dict[str, Any]
    exposed_ports: tuple[str, ...]
    #: `NetworkSettings.Ports`: the bindings the engine made.
    network_ports: dict[str, Any]
    exec_ids: tuple[str, ...]
    engine_cpus: int

    def __init__(self, inspect: dict[str, Any], engine_cpus: int = 1) -> None:
        self._decode(inspect, engine_cpus)
        self._packed = _pack(inspect)

    def _decode(self, inspect: dict[str, Any], engine_cpus: int) -> None:
        config = inspect.get("Config") or {}
        host_config = inspect.get("HostConfig") or {}
        self.id = str(inspect["Id"])
        self.name = str(inspect.get("Name") or "")
        self.created = parse_docker_time(inspect.get("Created"))
        self.image = _shared(str(config.get("Image") or ""))
        self.image_id = _shared(str(inspect.get("Image") or ""))
        self.state = _light_state(inspect.get("State") or {})
        self.labels = {k: _shared(v) for k, v in (config.get("Labels") or {}).items()}
        self.host_placement = {k: host_config[k] for k in PLACEMENT_HOST_KEYS if k in host_config}
        self.exposed_ports = tuple(config.get("ExposedPorts") or ())
        self.network_ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
        self.exec_ids = tuple(inspect.get("ExecIDs") or ())
        self.engine_cpus = engine_cpus

    @property
    def inspect(self) -> dict[str, Any]:
        """The full inspect, decoded afresh: the caller may change it."""
        return _unpack(self._packed)

    def _identity(self) -> object:
        return self._packed

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Container)
            and other.engine_cpus == self.engine_cpus
            and other._identity() == self._identity()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id[:12]} {self.name} {self.status})"

    @property
    def status(self) -> str:
        return str(self.state.get("Status", ""))

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def swarm_id(self) -> str | None:
        return self.labels.get(SWARM_ID_LABEL)

    @property
    def reserved_cpus(self) -> int:
        """Classic Swarm's CPU reservation: CpuShares read back as a CPU count
        (cluster/engine.go, `UsedCpus`)."""
        return container_cpus(self.host_placement, self.engine_cpus)

    @property
    def reserved_memory(self) -> int:
        return int(self.host_placement.get("Memory") or 0)

    def summary(self, now: float) -> dict[str, Any]:
        """The `GET /containers/json` shape, derived from the inspect so one cache serves both."""
        inspect = self.inspect
        settings = inspect.get("NetworkSettings") or {}
        path = inspect.get("Path") or ""
        args = inspect.get("Args") or []
        command = " ".join([path, *args]) if path else " ".join(args)
        return {
            "Id": self.id,
            "Names": [self.name],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": command,
            "Created": int(self.created),
            "Ports": ports_summary(self.network_ports),
            "Labels": self.labels,
            "State": self.status,
            "Status": container_status(self.state, now),
            "HostConfig": {"NetworkMode": self.host_placement.get("NetworkMode", "")},
            "NetworkSettings": {"Networks": settings.get("Networks") or {}},
            "Mounts": [
                {
                    k: m.get(k)
                    for k in (
                        "Type",
                        "Name",
                        "Source",
                        "Destination",
                        "Driver",
                        "Mode",
                        "RW",
                        "Propagation",
                    )
                    if k in m
                }
                for m in inspect.get("Mounts") or []
            ],
        }


def ports_summary(ports: dict[str, Any]) -> list[dict[str, Any]]:
    """Inspect's port map flattened the way `docker ps` expects it."""
    out: list[dict[str, Any]] = []
    for spec, bindings in ports.items():
        port, _, proto = spec.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in bindings:
            entry: dict[str, Any] = {"IP": b.get("HostIp", ""), "PrivatePort": int(port)}
            if b.get("HostPort"):
                entry["PublicPort"] = int(b["HostPort"])
            entry["Type"] = proto or "tcp"
            out.append(entry)
    return out


@dataclass(slots=True)
class Image:
    """One image in an engine's `GET /images/json?all=1` listing."""

    summary: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.summary["Id"])

    @property
    def repo_tags(self) -> list[str]:
        return [t for t in self.summary.get("RepoTags") or [] if t != "<none>:<none>"]

    @property
    def repo_digests(self) -> list[str]:
        return [d for d in self.summary.get("RepoDigests") or [] if d != "<none>@<none>"]

    def matches(self, ref: str) -> bool:
        """Classic Swarm's image match: ID or prefix, repo:tag (latest implied), or digest."""
        if not ref:
            return False
        bare = self.id.removeprefix("sha256:")
        wanted = ref.removeprefix("sha256:")
        if len(wanted) > 2 and bare.startswith(wanted) and all(
            c in "0123456789abcdef" for c in wanted
        ):
            return True
        if "@" in ref:
            return ref in self.repo_digests or any(
                normalize_ref(d) == normalize_ref(ref) for d in self.repo_digests
            )
        full = normalize_ref(ref)
        return any(normalize_ref(tag) == full for tag in self.repo_tags)


_HEX = frozenset("0123456789abcdef")


class ImageIndex:
    """An engine's images by normalized tag, digest and ID, for `Image.matches` without a scan."""

    def __init__(self, images: list[Image]) -> None:
        self.by_ref: dict[str, Image] = {}
        self.by_id: dict[str, Image] = {}
        self.ids = SortedKeys()
        for image in images:
            bare = image.id.removeprefix("sha256:")
            self.by_id[bare] = image
            self.ids.add(bare)
            for ref in (*image.repo_tags, *image.repo_digests):
                self.by_ref.setdefault(normalize_ref(ref), image)
                self.by_ref.setdefault(ref, image)

    def find(self, ref: str) -> Image | None:
        """The image `ref` names here, by the same rules as `Image.matches`."""
        if not ref:
            return None
        wanted = ref.removeprefix("sha256:")
        if len(wanted) > 2 and _HEX.issuperset(wanted):
            ids = self.ids.with_prefix(wanted)
            if ids:
                return self.by_id[ids[0]]
        return self.by_ref.get(ref) or self.by_ref.get(normalize_ref(ref))


def normalize_ref(ref: str) -> str:
    """`busybox`, `library/busybox:latest` and `docker.io/library/busybox` name one image."""
    name, digest_sep, digest = ref.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.startswith("library/"):
        name = name[len("library/") :]
    if digest_sep:
        return f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


@dataclass(slots=True)
class Network:
    """One network as its engine reports it."""

    inspect: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.inspect["Id"])

    @property
    def name(self) -> str:
        return str(self.inspect.get("Name", ""))

    @property
    def scope(self) -> str:
        return str(self.inspect.get("Scope", "local"))


@dataclass(slots=True)
class Volume:
    """One volume as its engine reports it."""

    inspect: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.inspect.get("Name", ""))

    @property
    def driver(self) -> str:
        return str(self.inspect.get("Driver", "local"))


@dataclass(slots=True)
class EngineSpecs:
    """What `/info` and `/version` say about an engine: identity and resources."""

    daemon_id: str = ""
    name: str = ""
    cpus: int = 0
    memory: int = 0
    version: str = ""
    api_version: str = ""
    min_api_version: str = ""
    os_type: str = "linux"
    labels: dict[str, str] = field(default_factory=dict)
    clock_skew: float = 0.0
