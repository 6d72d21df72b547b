"""Small builders for synthetic scheduler clusters used by the scheduler unit tests."""

from __future__ import annotations

from typing import Any

from shoal.scheduler.node import Node, NodeContainer, NodeImage


def ctr(
    cid: str = "",
    name: str | None = None,
    *,
    labels: dict[str, str] | None = None,
    state: str = "running",
    host_config: dict[str, Any] | None = None,
    exposed: list[str] | None = None,
    ports: dict[str, Any] | None = None,
    cpus: int = 0,
    memory: int = 0,
    swarm_id: str | None = None,
    image: str = "busybox",
) -> NodeContainer:
    return NodeContainer(
        id=cid,
        names=[f"/{name}"] if name else [],
        image=image,
        labels=labels or {},
        state=state,
        host_config=host_config or {},
        config_exposed_ports=exposed or [],
        network_ports=ports or {},
        cpus=cpus,
        memory=memory,
        swarm_id=swarm_id,
    )


def node(
    name: str,
    *containers: NodeContainer,
    nid: str | None = None,
    labels: dict[str, str] | None = None,
    health: int = 100,
    cpus: int = 0,
    memory: int = 0,
    images: list[NodeImage] | None = None,
) -> Node:
    return Node(
        id=nid or f"ID-{name}",
        name=name,
        addr=f"127.0.0.1:{2375}",
        labels=labels or {},
        health=health,
        total_cpus=cpus,
        total_memory=memory,
        containers=list(containers),
        images=images or [],
    )


def binding(host_port: str, host_ip: str = "") -> dict[str, str]:
    return {"HostIp": host_ip, "HostPort": host_port}


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]
