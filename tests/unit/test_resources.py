"""Local networks and volumes: classic naming, resolution, and containers following them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from shoal.cluster.engine import Engine
from shoal.cluster.records import Container, Network, Volume
from shoal.cluster.resources import (
    PROJECT_LABEL,
    listed_networks,
    pin_to_local_resources,
    placement_config,
    resolve_network,
    resolve_volume,
    volumes_matching,
)
from shoal.scheduler.labels import CONSTRAINTS_LABEL


def network(nid: str, name: str, scope: str = "local", **labels: str) -> Network:
    return Network({"Id": nid, "Name": name, "Scope": scope, "Labels": labels})


def volume(name: str, driver: str = "local", **labels: str) -> Volume:
    return Volume({"Name": name, "Driver": driver, "Labels": labels})


def engine(name: str, networks: Sequence[Network], volumes: Sequence[Volume] = (),
           containers: Sequence[Container] = ()) -> Engine:
    return cast(Engine, SimpleNamespace(
        name=name, id=f"ID{name}|addr",
        networks={n.id: n for n in networks},
        volumes={v.name: v for v in volumes},
        containers={c.id: c for c in containers},
    ))


def builtins(prefix: str) -> list[Network]:
    return [network(prefix + "b" * 63, "bridge"), network(prefix + "h" * 63, "host")]


def cluster() -> list[Engine]:
    return [
        engine("node-0", [*builtins("0"), network("a" * 64, "mynet"),
                          network("c" * 64, "shared")],
               [volume("data"), volume("both")]),
        engine("node-1", [*builtins("1"), network("d" * 64, "shared"),
                          network("e" * 64, "ov", scope="swarm")],
               [volume("both"), volume("plug", driver="rexray")]),
    ]


def constraints(config: dict[str, Any]) -> list[str]:
    return list(json.loads(config["Labels"].get(CONSTRAINTS_LABEL, "[]")))


def test_listing_names_local_networks_by_node() -> None:
    shown = sorted(s for _, _, s in listed_networks(cluster()))
    assert shown == ["node-0/bridge", "node-0/host", "node-0/mynet", "node-0/shared",
                     "node-1/bridge", "node-1/host", "node-1/shared", "ov"]


def test_network_resolution() -> None:
    engines = cluster()
    found = resolve_network(engines, "mynet")
    assert found is not None and found[0].name == "node-0"
    assert resolve_network(engines, "bridge") is None  # one per node: ambiguous
    found = resolve_network(engines, "node-1/bridge")
    assert found is not None and found[1].id == "1" + "b" * 63
    assert resolve_network(engines, "shared") is None
    found = resolve_network(engines, "node-1/shared")
    assert found is not None and found[0].name == "node-1"
    found = resolve_network(engines, "aaaa")  # unique ID prefix
    assert found is not None and found[1].name == "mynet"
    assert resolve_network(engines, "nope") is None
    assert resolve_network(engines, "") is None


def test_volume_resolution() -> None:
    engines = cluster()
    found = resolve_volume(engines, "data")
    assert found is not None and found[0].name == "node-0"
    assert resolve_volume(engines, "both") is None  # local on two nodes: ambiguous
    found = resolve_volume(engines, "node-1/both")
    assert found is not None and found[0].name == "node-1"
    assert len(volumes_matching(engines, "both")) == 2
    assert len(volumes_matching(engines, "node-0/both")) == 1
    assert resolve_volume(engines, "nope") is None


def test_container_follows_its_local_network() -> None:
    config: dict[str, Any] = {"HostConfig": {"NetworkMode": "mynet"}, "Labels": {}}
    pin_to_local_resources(config, cluster())
    assert constraints(config) == ["node==~node-0"]
    assert config["HostConfig"]["NetworkMode"] == "mynet"


def test_node_prefixed_network_is_rewritten() -> None:
    config: dict[str, Any] = {
        "HostConfig": {"NetworkMode": "node-1/shared"},
        "NetworkingConfig": {"EndpointsConfig": {"node-1/shared": {"Aliases": ["x"]}}},
    }
    pin_to_local_resources(config, cluster())
    assert config["HostConfig"]["NetworkMode"] == "shared"
    assert config["NetworkingConfig"]["EndpointsConfig"] == {"shared": {"Aliases": ["x"]}}
    assert constraints(config) == ["node==~node-1"]


def test_hard_node_constraint_wins() -> None:
    config: dict[str, Any] = {
        "HostConfig": {"NetworkMode": "mynet"},
        "Labels": {CONSTRAINTS_LABEL: json.dumps(["node==node-1"])},
    }
    pin_to_local_resources(config, cluster())
    assert constraints(config) == ["node==node-1"]


def test_builtin_and_global_networks_pin_nothing() -> None:
    for mode in ("bridge", "host", "default", "container:x", "ov", "node-0/bridge"):
        config: dict[str, Any] = {"HostConfig": {"NetworkMode": mode}}
        pin_to_local_resources(config, cluster())
        wanted = ["node==~node-0"] if mode == "node-0/bridge" else []
        assert constraints({"Labels": config.get("Labels") or {}}) == wanted, mode


def test_container_follows_a_volume_on_one_node() -> None:
    config: dict[str, Any] = {"HostConfig": {"Binds": ["data:/data:rw", "/host:/h"]}}
    pin_to_local_resources(config, cluster())
    assert constraints(config) == ["node==~node-0"]
    config = {"HostConfig": {"Mounts": [{"Type": "volume", "Source": "data", "Target": "/d"}]}}
    pin_to_local_resources(config, cluster())
    assert constraints(config) == ["node==~node-0"]


def test_volume_on_several_nodes_or_nowhere_pins_nothing() -> None:
    for bind in ("both:/x", "fresh:/x", "plug:/x"):
        config: dict[str, Any] = {"HostConfig": {"Binds": [bind]}}
        pin_to_local_resources(config, cluster())
        assert "Labels" not in config, bind


def test_node_prefixed_volume_is_rewritten() -> None:
    config: dict[str, Any] = {"HostConfig": {
        "Binds": ["node-1/both:/data:ro"],
        "Mounts": [{"Type": "volume", "Source": "node-1/both", "Target": "/m"}],
    }}
    pin_to_local_resources(config, cluster())
    assert config["HostConfig"]["Binds"] == ["both:/data:ro"]
    assert config["HostConfig"]["Mounts"][0]["Source"] == "both"
    assert constraints(config) == ["node==~node-1"]


def test_conflicting_homes_pin_nothing() -> None:
    config: dict[str, Any] = {"HostConfig": {"NetworkMode": "mynet",
                                             "Binds": ["node-1/both:/d"]}}
    pin_to_local_resources(config, cluster())
    assert "Labels" not in config


def test_compose_project_resources_share_a_node() -> None:
    engines = [
        engine("node-0", builtins("0")),
        engine("node-1", [*builtins("1"), network("f" * 64, "p_default", **{PROJECT_LABEL: "p"})]),
    ]
    config = placement_config(engines, None, {PROJECT_LABEL: "p"})
    assert constraints(config) == ["node==~node-1"]
    assert constraints(placement_config(engines, None, {PROJECT_LABEL: "q"})) == []
    assert constraints(placement_config(engines, "node-0", None)) == ["node==node-0"]
