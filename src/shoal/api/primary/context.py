"""What every primary route needs: the cluster and how this manager was started."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shoal.api.http import Hijack, Request, Response, StreamResponse
from shoal.api.primary.swarm_mode import SwarmMode
from shoal.cluster.client import MAX_API_VERSION, version_tuple
from shoal.cluster.cluster import Cluster

DEFAULT_API_VERSION = "1.41"
DEFAULT_MIN_API_VERSION = "1.12"

#: Path variables of the matched route (`{name}` in `/containers/{name:.*}/json`).
Params = dict[str, str]
Answer = Response | StreamResponse | Hijack


@dataclass
class ApiContext:
    """Shared by the route modules; built once by `manage`."""

    cluster: Cluster
    strategy: str = "spread"
    filters: list[str] = field(default_factory=list)
    experimental: bool = False
    #: ("primary", None) or ("replica", "<primary addr>"); replication fills it in later.
    role: Callable[[], tuple[str, str | None]] = lambda: ("primary", None)
    #: The engine a client made a swarm-mode manager through shoal (or directly), if any.
    swarm_mode: SwarmMode = field(default_factory=SwarmMode)

    _versions: tuple[int, str, str] = (-1, "", "")

    def api_version(self) -> str:
        """The newest version every healthy engine speaks, so no client asks for more."""
        return self._negotiated()[1]

    def min_api_version(self) -> str:
        return self._negotiated()[2]

    def _negotiated(self) -> tuple[int, str, str]:
        """Every answer carries the version: worked out again only when engines change."""
        epoch = self.cluster.health_epoch
        if self._versions[0] != epoch:
            engines = self.cluster.healthy_engines()
            newest = [e.specs.api_version for e in engines if e.specs.api_version]
            oldest = [e.specs.min_api_version for e in engines if e.specs.min_api_version]
            self._versions = (
                epoch,
                min([*newest, MAX_API_VERSION], key=version_tuple)
                if newest
                else DEFAULT_API_VERSION,
                max(oldest, key=version_tuple) if oldest else DEFAULT_MIN_API_VERSION,
            )
        return self._versions


#: A primary route: the context is passed in, so every handler is a plain function.
Handler = Callable[[ApiContext, Request, Params], Awaitable[Answer]]
