"""The scheduler's view of one engine, with lazily built per-node indexes.

A Node is a snapshot: build it from the engine's caches (plus its pending creates)
and reuse the same object for as long as that engine's containers and images are
unchanged, so the indexes below are built once, not once per decision.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from shoal.scheduler.expr import Candidates
from shoal.scheduler.labels import ID_LABEL
from shoal.scheduler.request import iter_bindings, normalize_port
from shoal.scheduler.resources import container_cpus, requested_resources

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
SLOTS_LABEL = "containerslots"
_ATOI_RE = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class NodeContainer:
    """A container (cached, or pending creation) as the scheduler needs it."""

    id: str
    names: Sequence[str] = ()  # with the leading "/"
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "running"
    host_config: Mapping[str, Any] = field(default_factory=dict)
    config_exposed_ports: Sequence[str] = ()
    network_ports: Mapping[str, Any] = field(default_factory=dict)
    cpus: int = 0
    memory: int = 0
    swarm_id: str | None = None

    @classmethod
    def from_inspect(cls, info: Mapping[str, Any], engine_cpus: int) -> NodeContainer:
        """From a `GET /containers/{id}/json` body (CpuShares read back as CPUs)."""
        config: Mapping[str, Any] = info.get("Config") or {}
        hc: Mapping[str, Any] = info.get("HostConfig") or {}
        labels: Mapping[str, str] = config.get("Labels") or {}
        names = info.get("Names") or ([info["Name"]] if info.get("Name") else [])
        state = info.get("State")
        status = state.get("Status", "") if isinstance(state, Mapping) else str(state or "")
        return cls(
            id=str(info.get("Id") or ""),
            names=tuple(names),
            image=str(config.get("Image") or info.get("Image") or ""),
            labels=labels,
            state=status,
            host_config=hc,
            config_exposed_ports=tuple(config.get("ExposedPorts") or ()),
            network_ports=(info.get("NetworkSettings") or {}).get("Ports") or {},
            cpus=container_cpus(hc, engine_cpus),
            memory=int(hc.get("Memory") or 0),
            swarm_id=labels.get(ID_LABEL),
        )

    @classmethod
    def pending(cls, config: Mapping[str, Any], name: str = "") -> NodeContainer:
        """A container being created from `config`: requested bindings and resources only."""
        cpus, memory = requested_resources(config)
        labels: Mapping[str, str] = config.get("Labels") or {}
        return cls(
            id="",
            names=["/" + name] if name else [],
            image=str(config.get("Image") or ""),
            labels=labels,
            state="pending",
            host_config=config.get("HostConfig") or {},
            config_exposed_ports=list(config.get("ExposedPorts") or ()),
            cpus=cpus,
            memory=memory,
            swarm_id=labels.get(ID_LABEL),
        )


@dataclass(frozen=True, slots=True)
class NodeImage:
    """An image present on an engine."""

    id: str
    repo_tags: Sequence[str] = ()
    repo_digests: Sequence[str] = ()


def parse_repository_tag(name: str) -> tuple[str, str]:
    """Go's ParseRepositoryTag: split `repo:tag` / `repo@digest`, minding registry ports."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest.split("@")[0]
    n = name.rfind(":")
    if n < 0:
        return name, ""
    tag = name[n + 1 :]
    if "/" not in tag:
        return name[:n], tag
    return name, ""


@dataclass(frozen=True)
class PortSlot:
    """Host IPs bound on one (host port, protocol) of a node."""

    ips: frozenset[str]
    any_all: bool  # some binding listens on every interface


@dataclass(frozen=True)
class ContainerRefs:
    """Lookup tables resolving a container reference by ID, name or ID prefix."""

    ids: frozenset[str]
    short_ids: frozenset[str]
    swarm_ids: frozenset[str]
    short_swarm_ids: frozenset[str]
    names: Mapping[str, frozenset[int]]  # stored name (with "/") -> container indexes
    sorted_ids: Sequence[str]
    sorted_swarm_ids: Sequence[str]

    @classmethod
    def build(cls, containers: Sequence[NodeContainer]) -> ContainerRefs:
        names: dict[str, set[int]] = {}
        ids = [c.id for c in containers if c.id]
        swarm_ids = [c.swarm_id for c in containers if c.swarm_id]
        for i, c in enumerate(containers):
            for name in c.names:
                names.setdefault(name, set()).add(i)
        return cls(
            ids=frozenset(ids),
            short_ids=frozenset(i[:12] for i in ids),
            swarm_ids=frozenset(swarm_ids),
            short_swarm_ids=frozenset(s[:12] for s in swarm_ids),
            names={k: frozenset(v) for k, v in names.items()},
            sorted_ids=sorted(ids),
            sorted_swarm_ids=sorted(swarm_ids),
        )

    @staticmethod
    def _prefix_count(sorted_values: Sequence[str], prefix: str) -> int:
        lo = bisect.bisect_left(sorted_values, prefix)
        hi = lo
        while hi < len(sorted_values) and sorted_values[hi].startswith(prefix):
            hi += 1
            if hi - lo > 1:
                break
        return hi - lo

    def resolves(self, ref: str, node_id: str, node_name: str) -> bool:
        """Whether `ref` names exactly one container of the node."""
        if not ref:
            return False
        if ref in self.ids or ref in self.short_ids:
            return True
        if ref in self.swarm_ids or ref in self.short_swarm_ids:
            return True
        keys = {ref, "/" + ref}
        if node_id and ref.startswith(node_id):
            keys.add(ref[len(node_id) :])
        if node_name and ref.startswith(node_name):
            keys.add(ref[len(node_name) :])
        matched: set[int] = set()
        for key in keys:
            matched |= self.names.get(key, frozenset())
        if matched:
            return len(matched) == 1
        hits = self._prefix_count(self.sorted_ids, ref)
        if hits < 2:
            hits += self._prefix_count(self.sorted_swarm_ids, ref)
        return hits == 1


@dataclass(eq=False)
class Node:
    """One engine as the scheduler sees it; totals already include overcommit.

    A snapshot: never changed once handed to the scheduler (a changed engine gets a new
    Node), which is what lets the scheduler keep rankings between decisions.
    """

    id: str
    name: str
    addr: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    health: int = 100  # health indicator 0..100, lowered by failed calls
    total_cpus: int = 0
    total_memory: int = 0
    containers: Sequence[NodeContainer] = ()  # cached and pending
    images: Sequence[NodeImage] = ()
    #: Reservations, summed when the snapshot is made (one engine's containers), so that
    #: the first decision over a fresh set of views does not sum every container at once.
    used_cpus: int = field(init=False)
    used_memory: int = field(init=False)

    def __post_init__(self) -> None:
        self.used_cpus = sum(c.cpus for c in self.containers)
        self.used_memory = sum(c.memory for c in self.containers)

    def __repr__(self) -> str:
        return f"Node(id={self.id!r}, name={self.name!r})"

    def with_containers(self, *extra: NodeContainer) -> Node:
        """A new snapshot with `extra` (e.g. a pending create) added."""
        return dataclasses.replace(self, containers=[*self.containers, *extra])

    @property
    def healthy(self) -> bool:
        return self.health > 0

    @cached_property
    def slots_limit(self) -> int | None:
        """`containerslots` label as Go's Atoi reads it; None (unlimited) if absent or bad."""
        raw = self.labels.get(SLOTS_LABEL)
        if raw is None or _ATOI_RE.fullmatch(raw) is None:
            return None
        return int(raw)

    @cached_property
    def host_exposed_ports(self) -> frozenset[str]:
        """Ports exposed by the node's host-network containers, any state."""
        return frozenset(
            normalize_port(str(p))
            for c in self.containers
            if c.host_config.get("NetworkMode") == "host"
            for p in c.config_exposed_ports
        )

    @cached_property
    def port_slots(self) -> Mapping[tuple[str, str], PortSlot]:
        """(host port, proto) -> bound IPs, from requested and actual bindings."""
        ips: dict[tuple[str, str], set[str]] = {}
        for c in self.containers:
            for source in (c.host_config.get("PortBindings"), c.network_ports):
                for _, proto, host_ip, host_port in iter_bindings(source):
                    if host_port:
                        ips.setdefault((host_port, proto), set()).add(host_ip)
        return {key: PortSlot(frozenset(v), bool(v & ALL_INTERFACES)) for key, v in ips.items()}

    @cached_property
    def container_refs(self) -> ContainerRefs:
        return ContainerRefs.build(self.containers)

    @cached_property
    def container_strings(self) -> Candidates:
        """ID and first name (no "/") of every named container: `affinity:container`."""
        out: list[str] = []
        for c in self.containers:
            if c.names:
                if c.id:
                    out.append(c.id)
                out.append(c.names[0].removeprefix("/"))
        return Candidates(out)

    @cached_property
    def image_strings(self) -> Candidates:
        """Image IDs, `repo:tag`s and bare repos: `affinity:image`."""
        out: list[str] = []
        for image in self.images:
            out.append(image.id)
            out.extend(image.repo_tags)
            out.extend(parse_repository_tag(t)[0] for t in image.repo_tags)
        return Candidates(out)

    @cached_property
    def _label_candidates(self) -> dict[str, Candidates]:
        return {}

    def label_values(self, key: str) -> Candidates:
        """Values of container label `key` across containers ("" where absent)."""
        cache = self._label_candidates
        found = cache.get(key)
        if found is None:
            found = Candidates(c.labels.get(key, "") for c in self.containers)
            cache[key] = found
        return found

    def constraint_value(self, key: str) -> str:
        """Engine label value for a constraint key; `health` is derived (shoal extension)."""
        if key == "health" and key not in self.labels:
            return "healthy" if self.healthy else "unhealthy"
        return self.labels.get(key, "")
