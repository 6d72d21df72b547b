"""What a container config asks of the scheduler, extracted once per decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shoal.scheduler.errors import ExprError
from shoal.scheduler.expr import Expr, parse_exprs
from shoal.scheduler.labels import rules_from_config
from shoal.scheduler.resources import requested_resources


@dataclass(frozen=True)
class PortRequest:
    """One requested host binding from `HostConfig.PortBindings`."""

    port: str  # the PortBindings key, e.g. "80/tcp"
    proto: str
    host_ip: str
    host_port: str


def port_proto(port: str) -> str:
    """Protocol of a Docker port key (`80/udp` -> udp; bare `80` is tcp)."""
    _, sep, proto = port.partition("/")
    return proto.lower() if sep and proto else "tcp"


def normalize_port(port: str) -> str:
    """`80` -> `80/tcp`, so exposed-port keys compare equal across spellings."""
    return port if "/" in port else port + "/tcp"


def iter_bindings(bindings: Any) -> list[tuple[str, str, str, str]]:
    """(port key, proto, HostIp, HostPort) for every binding in a PortBindings/Ports map."""
    out: list[tuple[str, str, str, str]] = []
    if not isinstance(bindings, Mapping):
        return out
    for port, entries in bindings.items():
        if not entries:
            continue
        proto = port_proto(str(port))
        for b in entries:
            if isinstance(b, Mapping):
                out.append(
                    (str(port), proto, str(b.get("HostIp") or ""), str(b.get("HostPort") or ""))
                )
    return out


@dataclass(frozen=True)
class PlacementRequest:
    """The scheduling-relevant parts of a Docker create body."""

    config: Mapping[str, Any]
    network_mode: str
    exposed_ports: tuple[str, ...]
    port_bindings: tuple[PortRequest, ...]
    volumes_from: tuple[str, ...]
    links: tuple[str, ...]
    cpus: int
    memory: int
    constraint_rules: tuple[str, ...]
    affinity_rules: tuple[str, ...]
    whitelist_rules: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PlacementRequest:
        hc: Mapping[str, Any] = config.get("HostConfig") or {}
        cpus, memory = requested_resources(config)
        return cls(
            config=config,
            network_mode=str(hc.get("NetworkMode") or ""),
            exposed_ports=tuple(str(p) for p in (config.get("ExposedPorts") or {})),
            port_bindings=tuple(
                PortRequest(port, proto, ip, hp)
                for port, proto, ip, hp in iter_bindings(hc.get("PortBindings"))
            ),
            volumes_from=tuple(str(v) for v in (hc.get("VolumesFrom") or ())),
            links=tuple(str(v) for v in (hc.get("Links") or ())),
            cpus=cpus,
            memory=memory,
            constraint_rules=tuple(rules_from_config(config, "constraint")),
            affinity_rules=tuple(rules_from_config(config, "affinity")),
            whitelist_rules=tuple(rules_from_config(config, "whitelist")),
        )

    @cached_property
    def constraints(self) -> list[Expr]:
        return parse_exprs(self.constraint_rules)

    @cached_property
    def affinities(self) -> list[Expr]:
        return parse_exprs(self.affinity_rules)

    @cached_property
    def whitelists(self) -> list[Expr]:
        return parse_exprs(self.whitelist_rules)

    @property
    def host_mode(self) -> bool:
        return self.network_mode == "host"

    @property
    def net_container(self) -> str | None:
        """The X of `--net=container:X`, if any."""
        if self.network_mode.startswith("container:"):
            return self.network_mode[len("container:") :]
        return None

    def has_soft_rules(self) -> bool:
        """Whether a second pass without soft rules could differ from the first."""
        try:
            exprs = [*self.constraints, *self.affinities, *self.whitelists]
        except ExprError:
            return False
        return any(e.soft for e in exprs)
