"""The port filter: host mode, bridge mode, HostIP rules, stopped and pending containers."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler import Scheduler, SchedulerError
from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.port import PortFilter
from shoal.scheduler.node import NodeContainer
from shoal.scheduler.request import PlacementRequest

from .scheduler_factories import binding, ctr, names, node


def bridge(*bindings: tuple[str, str, str]) -> dict[str, Any]:
    """Config publishing (container port, host ip, host port) triples."""
    pb: dict[str, list[dict[str, str]]] = {}
    for port, ip, hp in bindings:
        pb.setdefault(port, []).append(binding(hp, ip))
    return {"HostConfig": {"PortBindings": pb}}


def run(config: dict[str, Any], *nodes_: Any) -> list[str]:
    return names(PortFilter().apply(PlacementRequest.from_config(config), list(nodes_), True))


def holder(
    hc_bindings: dict[str, Any] | None = None,
    ports: dict[str, Any] | None = None,
    state: str = "running",
) -> NodeContainer:
    return ctr(
        "c" * 64, "x", host_config={"PortBindings": hc_bindings or {}}, ports=ports, state=state
    )


def test_bridge_requested_binding_conflicts() -> None:
    busy = node("busy", holder({"80/tcp": [binding("80")]}))
    free = node("free")
    assert run(bridge(("80/tcp", "", "80")), busy, free) == ["free"]


def test_bridge_actual_binding_conflicts() -> None:
    # -p 80 (random host port) got 32768; requesting host port 32768 conflicts.
    busy = node(
        "busy", holder({"80/tcp": [binding("")]}, {"80/tcp": [binding("32768", "0.0.0.0")]})
    )
    assert run(bridge(("8080/tcp", "", "32768")), busy, node("free")) == ["free"]


def test_stopped_container_still_reserves_its_port() -> None:
    busy = node("busy", holder({"80/tcp": [binding("80")]}, state="exited"))
    assert run(bridge(("80/tcp", "", "80")), busy, node("free")) == ["free"]


def test_pending_container_reserves_requested_port() -> None:
    pending = NodeContainer.pending(bridge(("80/tcp", "", "80")), "p1")
    busy = node("busy", pending)
    assert run(bridge(("80/tcp", "", "80")), busy, node("free")) == ["free"]


def test_empty_host_port_never_conflicts() -> None:
    busy = node("busy", holder({"80/tcp": [binding("")]}))
    assert run(bridge(("80/tcp", "", "")), busy) == ["busy"]


def test_other_port_does_not_conflict() -> None:
    busy = node("busy", holder({"80/tcp": [binding("80")]}))
    assert run(bridge(("80/tcp", "", "81")), busy) == ["busy"]


@pytest.mark.parametrize(
    ("existing_ip", "requested_ip", "conflict"),
    [
        ("", "", True),
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("127.0.0.1", "", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::", "127.0.0.2", True),
    ],
)
def test_host_ip_rules(existing_ip: str, requested_ip: str, conflict: bool) -> None:
    busy = node("busy", holder({"80/tcp": [binding("80", existing_ip)]}))
    survivors = run(bridge(("80/tcp", requested_ip, "80")), busy, node("free"))
    assert survivors == (["free"] if conflict else ["busy", "free"])


def test_protocols_are_independent() -> None:
    busy = node("busy", holder({"53/udp": [binding("53")]}))
    assert run(bridge(("53/tcp", "", "53")), busy) == ["busy"]
    assert run(bridge(("53/udp", "", "53")), busy, node("free")) == ["free"]


def test_every_requested_binding_must_be_free() -> None:
    n80 = node("n80", holder({"80/tcp": [binding("80")]}))
    n443 = node("n443", holder({"443/tcp": [binding("443")]}))
    free = node("free")
    cfg = bridge(("80/tcp", "", "80"), ("443/tcp", "", "443"))
    assert run(cfg, n80, n443, free) == ["free"]


def test_bridge_error() -> None:
    busy = node("busy", holder({"80/tcp": [binding("80")]}))
    with pytest.raises(FilterError, match=r"^unable to find a node with port 80 available$"):
        run(bridge(("80/tcp", "", "80")), busy)


def host_ctr(*exposed: str) -> NodeContainer:
    return ctr(
        "h" * 64, "h", host_config={"NetworkMode": "host"}, exposed=list(exposed), state="exited"
    )


def test_host_mode_conflicts_with_host_mode_containers_only() -> None:
    cfg = {"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "host"}}
    host_busy = node("hostbusy", host_ctr("80/tcp"))
    bridge_busy = node("bridgebusy", holder({"80/tcp": [binding("80")]}))
    other = node("other", host_ctr("81/tcp"))
    assert run(cfg, host_busy, bridge_busy, other) == ["bridgebusy", "other"]
    with pytest.raises(FilterError) as info:
        run(cfg, host_busy)
    assert str(info.value) == "unable to find a node with port 80/tcp available in the Host mode"


def test_host_mode_ignores_port_bindings() -> None:
    cfg = {
        "ExposedPorts": {},
        "HostConfig": {"NetworkMode": "host", "PortBindings": {"80/tcp": [binding("80")]}},
    }
    busy = node("busy", holder({"80/tcp": [binding("80")]}))
    assert run(cfg, busy) == ["busy"]


def test_error_text_through_scheduler_host_mode() -> None:
    cfg = {"ExposedPorts": {"80/tcp": {}}, "HostConfig": {"NetworkMode": "host"}}
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, [node("a", host_ctr("80/tcp"))])
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions \n[port 80/tcp (Host mode)]"
    )


def test_error_text_through_scheduler_bridge_mode() -> None:
    cfg = bridge(("80/tcp", "", "80"), ("81/tcp", "", "81"))
    with pytest.raises(SchedulerError) as info:
        Scheduler().select(cfg, [node("a", holder({"81/tcp": [binding("81")]}))])
    assert str(info.value) == (
        "Unable to find a node that satisfies the following conditions "
        "\n[port 80 (Bridge mode) port 81 (Bridge mode)]"
    )


def test_two_port_80_on_two_nodes_then_third_fails() -> None:
    sched = Scheduler()
    cfg = bridge(("80/tcp", "", "80"))
    nodes = [node("n0", cpus=2, memory=1 << 30), node("n1", cpus=2, memory=1 << 30)]
    placed: list[str] = []
    for i in range(2):
        chosen = sched.select(cfg, nodes)[0]
        placed.append(chosen.name)
        idx = nodes.index(chosen)
        nodes[idx] = chosen.with_containers(NodeContainer.pending(cfg, f"web{i}"))
    assert sorted(placed) == ["n0", "n1"]
    with pytest.raises(SchedulerError, match=r"\[port 80 \(Bridge mode\)\]$"):
        sched.select(cfg, nodes)
