"""The cluster page's JSON: totals for the whole cluster, full detail for one page of nodes.

At a thousand nodes the page shows every node as a dot in the overview and only one
page of cards, so an answer stays small however big the cluster; answers are cached
per snapshot version and query, so many open pages cost one rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shoal.ops.snapshot import ENGINE_STATES, ClusterSnapshot, NodeView

__all__ = ["MAX_CONTAINERS", "PageQuery", "render_page"]

#: Containers listed per card; the rest are counted ("and 12 more").
MAX_CONTAINERS = 50
MAX_PER_PAGE = 200


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Which nodes a page shows: a name/address filter, a state, and a page of cards."""

    page: int = 0
    per_page: int = 48
    search: str = ""
    state: str = ""

    @classmethod
    def parse(cls, params: Any) -> PageQuery:
        """From query parameters; ValueError on a bad number or state."""
        page = int(params.get("page", "0") or 0)
        per_page = int(params.get("per_page", "48") or 48)
        state = str(params.get("state", "") or "")
        if page < 0 or not 0 < per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be >= 0 and per_page in 1..{MAX_PER_PAGE}")
        if state and state not in ENGINE_STATES:
            raise ValueError(f"state must be one of {', '.join(ENGINE_STATES)}")
        return cls(page, per_page, str(params.get("q", "") or "").strip().lower(), state)

    def matches(self, node: NodeView) -> bool:
        if self.state and node.state != self.state:
            return False
        return not self.search or self.search in node.name.lower() or self.search in node.addr


def _node_json(node: NodeView) -> dict[str, Any]:
    shown = node.containers[:MAX_CONTAINERS]
    return {
        "name": node.name,
        "addr": node.addr,
        "state": node.state,
        "error": node.error,
        "cpus": node.cpus,
        "reserved_cpus": node.reserved_cpus,
        "memory": node.memory,
        "reserved_memory": node.reserved_memory,
        "container_count": len(node.containers),
        "running": sum(1 for c in node.containers if c.state == "running"),
        "containers": [
            {"id": c.id[:12], "name": c.name, "image": c.image, "state": c.state} for c in shown
        ],
    }


def render_page(snap: ClusterSnapshot, version: int, query: PageQuery) -> bytes:
    """The page's JSON for one snapshot and query."""
    matched = [n for n in snap.nodes if query.matches(n)]
    pages = max(1, -(-len(matched) // query.per_page))
    page = min(query.page, pages - 1)
    start = page * query.per_page
    body = {
        "version": version,
        "taken_at": snap.taken_at,
        "strategy": snap.strategy,
        "role": snap.role,
        "primary": snap.primary,
        "totals": {
            "nodes": len(snap.nodes),
            "engines": snap.engines_by_state(),
            "containers": snap.containers_by_state,
            "cpus": sum(n.cpus for n in snap.nodes if n.state == "healthy"),
            "reserved_cpus": sum(n.reserved_cpus for n in snap.nodes if n.state == "healthy"),
            "memory": sum(n.memory for n in snap.nodes if n.state == "healthy"),
            "reserved_memory": sum(
                n.reserved_memory for n in snap.nodes if n.state == "healthy"
            ),
        },
        # Every node, compactly, for the overview strip: [name, state, containers].
        "overview": [[n.name, n.state, len(n.containers)] for n in snap.nodes],
        "page": page,
        "pages": pages,
        "per_page": query.per_page,
        "matched": len(matched),
        "nodes": [_node_json(n) for n in matched[start : start + query.per_page]],
    }
    return json.dumps(body, separators=(",", ":")).encode()
