"""Discovery URL parsing: picks the backend for a ``scheme://rest`` string."""

from __future__ import annotations

from collections.abc import Mapping

from shoal.discovery.base import Discovery, DiscoveryError
from shoal.discovery.file import FileDiscovery
from shoal.discovery.nodes import NodesDiscovery

__all__ = [
    "KV_SCHEMES",
    "NOT_SUPPORTED",
    "TOKEN_GONE",
    "parse_discovery",
    "split_discovery_url",
]

NOT_SUPPORTED = "discovery service not supported"
TOKEN_GONE = (
    "token discovery is no longer available: "
    "the hosted discovery service was shut down in 2019"
)
KV_SCHEMES = frozenset({"consul", "etcd", "zk"})
# Engine URLs given directly (beyond classic Swarm) are a nodes list.
_ENGINE_SCHEMES = frozenset({"tcp", "unix"})


def split_discovery_url(url: str) -> tuple[str, str]:
    """Return (scheme, rest); no ``://`` or an engine URL list means ``nodes``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "nodes", url
    if scheme in _ENGINE_SCHEMES:
        return "nodes", url
    return scheme, rest


def parse_discovery(
    url: str, heartbeat: float, ttl: float, options: Mapping[str, str]
) -> Discovery:
    """Build the backend for ``url``; raises DiscoveryError with classic Swarm's messages.

    ``heartbeat`` is the polling period of polling backends, ``ttl`` the lifetime
    of a registration, ``options`` the ``--discovery-opt`` values. Nothing is
    read or dialled here: that starts with ``watch()``.
    """
    del ttl, options  # used by the kv backends, which come later
    scheme, rest = split_discovery_url(url)
    if scheme == "nodes":
        return NodesDiscovery(rest)
    if scheme == "file":
        return FileDiscovery(rest, heartbeat)
    if scheme == "token":
        raise DiscoveryError(TOKEN_GONE)
    if scheme in KV_SCHEMES:
        raise DiscoveryError(f'discovery backend "{scheme}" is not supported yet')
    raise DiscoveryError(NOT_SUPPORTED)
