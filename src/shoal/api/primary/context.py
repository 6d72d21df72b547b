"""What every primary route needs: the cluster and how this manager was started."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.cluster.client import MAX_API_VERSION, version_tuple
from shoal.cluster.cluster import Cluster

DEFAULT_API_VERSION = "1.41"
DEFAULT_MIN_API_VERSION = "1.12"


@dataclass
class ApiContext:
    """Shared by the route modules; built once by `manage`."""

    cluster: Cluster
    strategy: str = "spread"
    filters: list[str] = field(default_factory=list)
    experimental: bool = False
    #: ("primary", None) or ("replica", "<primary addr>"); replication fills it in later.
    role: Callable[[], tuple[str, str | None]] = lambda: ("primary", None)

    def api_version(self) -> str:
        """The newest version every healthy engine speaks, so no client asks for more."""
        versions = [
            e.specs.api_version for e in self.cluster.healthy_engines() if e.specs.api_version
        ]
        if not versions:
            return DEFAULT_API_VERSION
        return min([*versions, MAX_API_VERSION], key=version_tuple)

    def min_api_version(self) -> str:
        versions = [
            e.specs.min_api_version
            for e in self.cluster.healthy_engines()
            if e.specs.min_api_version
        ]
        if not versions:
            return DEFAULT_MIN_API_VERSION
        return max(versions, key=version_tuple)
