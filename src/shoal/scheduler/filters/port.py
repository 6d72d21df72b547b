"""`port` filter: keep nodes where the requested host ports are free."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import ALL_INTERFACES, Node
from shoal.scheduler.request import PlacementRequest, PortRequest, normalize_port


def port_in_use(node: Node, binding: PortRequest) -> bool:
    """Whether a container on `node` (any state) already binds this host port.

    Same protocol and same HostPort, and either the same HostIP or one side on all
    interfaces. Unlike classic Swarm the protocol must match: tcp and udp coexist.
    """
    if not binding.host_port:
        return False
    slot = node.port_slots.get((binding.host_port, binding.proto))
    if slot is None:
        return False
    return slot.any_all or binding.host_ip in ALL_INTERFACES or binding.host_ip in slot.ips


class PortFilter(Filter):
    """Host mode checks exposed ports against host-mode containers; others check bindings."""

    name = "port"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        candidates = list(nodes)
        if req.host_mode:
            for port in req.exposed_ports:
                wanted = normalize_port(port)
                candidates = [n for n in candidates if wanted not in n.host_exposed_ports]
                if not candidates:
                    raise FilterError(
                        f"unable to find a node with port {port} available in the Host mode"
                    )
            return candidates
        for binding in req.port_bindings:
            candidates = [n for n in candidates if not port_in_use(n, binding)]
            if not candidates:
                raise FilterError(f"unable to find a node with port {binding.host_port} available")
        return candidates

    def concerns(self, req: PlacementRequest) -> bool:
        """The ports `apply` checks: exposed ones in host mode, else the bindings."""
        return bool(req.exposed_ports if req.host_mode else req.port_bindings)

    def listing(self, req: PlacementRequest) -> list[str]:
        if req.host_mode:
            return [f"port {p} (Host mode)" for p in req.exposed_ports]
        return [f"port {b.host_port} (Bridge mode)" for b in req.port_bindings]
