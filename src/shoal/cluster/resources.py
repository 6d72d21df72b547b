"""Networks and volumes across engines: classic naming, resolution, and where containers follow.

Local-scope networks and `local`-driver volumes exist on one engine and are shown as
`node/name`; global ones keep their plain name. A container that uses a local network
or volume is pinned near it with a soft `node==~<engine>` constraint, so a create does
not fail for want of them on another node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from shoal.cluster.engine import Engine
from shoal.cluster.records import Network, Volume
from shoal.scheduler.labels import CONSTRAINTS_LABEL, go_json_list, parse_label_list

#: Network modes that never name a user network.
SPECIAL_MODES = frozenset({"", "default", "host", "none", "bridge"})
PROJECT_LABEL = "com.docker.compose.project"


def listed_networks(engines: Iterable[Engine]) -> list[tuple[Engine, Network, str]]:
    """Every network once: local ones per node as `node/name`, global ones by name."""
    seen: set[str] = set()
    out: list[tuple[Engine, Network, str]] = []
    for engine in engines:
        for network in engine.networks.values():
            if network.scope == "local":
                out.append((engine, network, f"{engine.name}/{network.name}"))
            elif network.id not in seen:
                seen.add(network.id)
                out.append((engine, network, network.name))
    return out


def resolve_network(engines: Iterable[Engine], ref: str) -> tuple[Engine, Network] | None:
    """Resolved as classic Swarm resolves containers: ID, unique name or `node/name`,
    `/name`, then an ID prefix."""
    if not ref:
        return None
    entries = listed_networks(engines)
    for engine, network, _ in entries:
        if network.id == ref or (len(ref) == 12 and network.id[:12] == ref):
            return engine, network
    named = [
        (e, n)
        for e, n, shown in entries
        if ref in (shown, n.name, f"{e.id}/{n.name}", f"{e.name}/{n.name}")
    ]
    if len({n.id for _, n in named}) == 1:
        return named[0]
    if named:
        return None
    slashed = [(e, n) for e, n, _ in entries if ref == "/" + n.name]
    if len({n.id for _, n in slashed}) == 1:
        return slashed[0]
    prefixed = [(e, n) for e, n, _ in entries if n.id.startswith(ref)]
    if len({n.id for _, n in prefixed}) == 1:
        return prefixed[0]
    return None


def volume_name(engine: Engine, volume: Volume) -> str:
    return f"{engine.name}/{volume.name}" if volume.driver == "local" else volume.name


def listed_volumes(engines: Iterable[Engine]) -> list[tuple[Engine, Volume, str]]:
    return [
        (engine, volume, volume_name(engine, volume))
        for engine in engines
        for volume in engine.volumes.values()
    ]


def volume_matches(engine: Engine, volume: Volume, ref: str) -> bool:
    return ref in (
        volume.name,
        volume_name(engine, volume),
        f"{engine.id}/{volume.name}",
        f"{engine.name}/{volume.name}",
    )


def resolve_volume(engines: Iterable[Engine], ref: str) -> tuple[Engine, Volume] | None:
    """Spec 3.3: name or `node/name`; among several, the first non-local one; then `/name`."""
    listed = listed_volumes(engines)
    matches = [(e, v) for e, v, _ in listed if volume_matches(e, v, ref)]
    if len(matches) == 1:
        return matches[0]
    for engine, volume in matches:
        if volume.name == ref and volume.driver != "local":
            return engine, volume
    if not matches:
        slashed = [(e, v) for e, v, _ in listed if ref == "/" + v.name]
        if len(slashed) == 1:
            return slashed[0]
    return None


def volumes_matching(engines: Iterable[Engine], ref: str) -> list[tuple[Engine, Volume]]:
    """Every engine's volume answering to `ref`: a plain name on every node, `node/x` on one."""
    return [(e, v) for e, v, _ in listed_volumes(engines) if volume_matches(e, v, ref)]


def split_node_ref(engines: Iterable[Engine], ref: str) -> tuple[Engine | None, str]:
    """`node/name` with a known node: that engine and the bare name; otherwise (None, ref)."""
    node, sep, name = ref.partition("/")
    if sep and name:
        for engine in engines:
            if node in (engine.name, engine.id):
                return engine, name
    return None, ref


def add_constraint(config: dict[str, Any], expr: str) -> None:
    labels: dict[str, str] = dict(config.get("Labels") or {})
    current = parse_label_list(labels.get(CONSTRAINTS_LABEL))
    if expr not in current:
        labels[CONSTRAINTS_LABEL] = go_json_list([*current, expr])
    config["Labels"] = labels


def has_hard_node_constraint(config: dict[str, Any]) -> bool:
    """Whether the config already says `node==X` (env rules are labels by now)."""
    labels = config.get("Labels") or {}
    for expr in parse_label_list(labels.get(CONSTRAINTS_LABEL)):
        key, sep, value = expr.partition("==")
        if sep and key.strip() == "node" and not value.startswith("~"):
            return True
    return False


def named_volume_refs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, name) for every named volume a create body mounts: Binds and Mounts."""
    host_config = config.get("HostConfig") or {}
    out: list[tuple[str, str]] = []
    for bind in host_config.get("Binds") or ():
        source = str(bind).split(":", 1)[0]
        if source and not source.startswith("/") and ":" in str(bind):
            out.append(("bind", source))
    for mount in host_config.get("Mounts") or ():
        if isinstance(mount, dict) and mount.get("Type") == "volume" and mount.get("Source"):
            out.append(("mount", str(mount["Source"])))
    return out


def _rename_volume(config: dict[str, Any], old: str, new: str) -> None:
    host_config = config.get("HostConfig") or {}
    binds = host_config.get("Binds")
    if binds:
        host_config["Binds"] = [
            new + str(b)[len(old) :] if str(b).startswith(old + ":") else b for b in binds
        ]
    for mount in host_config.get("Mounts") or ():
        if isinstance(mount, dict) and mount.get("Type") == "volume" and mount.get("Source") == old:
            mount["Source"] = new


def pin_to_local_resources(config: dict[str, Any], engines: Sequence[Engine]) -> None:
    """Rewrite `node/name` references and make the container follow its local network/volumes.

    The constraint is soft (`node==~`), as classic Swarm's for networks: the scheduler
    honours it when it can and otherwise places the container anyway (the engine then
    makes a fresh volume). Volumes get the same rule because the scheduler's node view
    knows no volumes, so the dependency filter cannot see them.
    """
    host_config = config.get("HostConfig")
    if not isinstance(host_config, dict):
        return
    hard_node = has_hard_node_constraint(config)
    targets: list[Engine] = []
    mode = str(host_config.get("NetworkMode") or "")
    if mode not in SPECIAL_MODES and not mode.startswith("container:"):
        found = resolve_network(engines, mode)
        if found is not None:
            engine, network = found
            if network.scope == "local":
                targets.append(engine)
            if mode != network.name and "/" in mode:
                host_config["NetworkMode"] = network.name
    networking = config.get("NetworkingConfig")
    endpoints = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
    if isinstance(endpoints, dict):
        for key in list(endpoints):
            engine_for_key, bare = split_node_ref(engines, key)
            if engine_for_key is not None and bare not in endpoints:
                endpoints[bare] = endpoints.pop(key)
    for _, ref in named_volume_refs(config):
        engine_for_ref, bare = split_node_ref(engines, ref)
        if engine_for_ref is not None:
            _rename_volume(config, ref, bare)
            targets.append(engine_for_ref)
            continue
        holders = {id(e): e for e, v in volumes_matching(engines, ref) if v.driver == "local"}
        if len(holders) == 1:
            targets.extend(holders.values())
    if hard_node or not targets:
        return
    first = targets[0]
    if all(t is first for t in targets):
        add_constraint(config, f"node==~{first.name}")


def project_home(engines: Sequence[Engine], labels: dict[str, str] | None) -> Engine | None:
    """The engine already holding a Compose project's network, volume or container.

    A project's default network and volumes are local: they must end up on one node,
    or its containers could follow only one of them.
    """
    project = (labels or {}).get(PROJECT_LABEL)
    if not project:
        return None
    for engine in engines:
        if any(
            (n.inspect.get("Labels") or {}).get(PROJECT_LABEL) == project
            for n in engine.networks.values()
        ):
            return engine
    for engine in engines:
        if any(
            (v.inspect.get("Labels") or {}).get(PROJECT_LABEL) == project
            for v in engine.volumes.values()
        ):
            return engine
    for engine in engines:
        if any(c.labels.get(PROJECT_LABEL) == project for c in engine.containers.values()):
            return engine
    return None


def placement_config(
    engines: Sequence[Engine], node: str | None, labels: dict[str, str] | None
) -> dict[str, Any]:
    """The empty container config a network or volume create is scheduled with."""
    config: dict[str, Any] = {"Labels": {}}
    if node is not None:
        add_constraint(config, f"node=={node}")
        return config
    rules = parse_label_list((labels or {}).get(CONSTRAINTS_LABEL))
    if rules:
        config["Labels"][CONSTRAINTS_LABEL] = json.dumps(rules)
    home = project_home(engines, labels)
    if home is not None:
        add_constraint(config, f"node==~{home.name}")
    return config
