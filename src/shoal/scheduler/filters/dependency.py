"""`dependency` filter: co-locate with `--volumes-from`, `--link` and `--net=container:` targets."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.scheduler.errors import FilterError
from shoal.scheduler.filters.base import Filter
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


def dependencies(req: PlacementRequest) -> list[str]:
    """Container references the new container needs on its node."""
    refs = [v.split(":", 1)[0] for v in req.volumes_from]
    refs.extend(link.split(":", 1)[0] for link in req.links)
    net = req.net_container
    if net is not None:
        refs.append(net)
    return refs


class DependencyFilter(Filter):
    """References resolve with the container rules (ID, name, prefix), on each node."""

    name = "dependency"

    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        refs = dependencies(req)
        if not nodes or not refs:
            return list(nodes)
        candidates = [
            n for n in nodes if all(n.container_refs.resolves(ref, n.id, n.name) for ref in refs)
        ]
        if not candidates:
            raise FilterError(
                "Unable to find a node fulfilling all dependencies: " + " ".join(self.listing(req))
            )
        return candidates

    def concerns(self, req: PlacementRequest) -> bool:
        return bool(req.volumes_from or req.links or req.net_container is not None)

    def listing(self, req: PlacementRequest) -> list[str]:
        out = [f"--volumes-from={v}" for v in req.volumes_from]
        out.extend(f"--link={link}" for link in req.links)
        if req.net_container is not None:
            out.append(f"--net={req.network_mode}")
        return out
