"""Discovery URL parsing: picks the backend for a ``scheme://rest`` string."""

from __future__ import annotations

from collections.abc import Mapping

from shoal.discovery.base import Discovery, DiscoveryError
from shoal.discovery.file import FileDiscovery
from shoal.discovery.kv import (
    DEFAULT_NODE_PATH,
    KVURL,
    KVBackend,
    KVDiscovery,
    parse_kv_url,
    tls_from_options,
)
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
    scheme, rest = split_discovery_url(url)
    if scheme == "nodes":
        return NodesDiscovery(rest)
    if scheme == "file":
        return FileDiscovery(rest, heartbeat)
    if scheme == "token":
        raise DiscoveryError(TOKEN_GONE)
    if scheme in KV_SCHEMES:
        kv_url = parse_kv_url(scheme, rest)
        node_path = options.get("kv.path") or DEFAULT_NODE_PATH
        backend = _kv_backend(kv_url, ttl, options)
        return KVDiscovery(backend, kv_url, heartbeat, ttl, node_path)
    raise DiscoveryError(NOT_SUPPORTED)


def _kv_backend(url: KVURL, ttl: float, options: Mapping[str, str]) -> KVBackend:
    """The store client for ``url``; imported here so the static backends need none of them."""
    tls = tls_from_options(options)
    if url.scheme == "etcd":
        from shoal.discovery.etcd import EtcdBackend
        from shoal.discovery.etcd_tls import load_credentials

        return EtcdBackend(url, load_credentials(tls) if tls is not None else None)
    if url.scheme == "zk":
        from shoal.discovery.zk import ZKBackend

        return ZKBackend(url, ttl, tls)
    from shoal.discovery.consul import ConsulBackend

    return ConsulBackend(url, tls)
