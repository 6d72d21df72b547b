"""Discovery backends: where the manager learns its engines' addresses."""

import os

# gRPC's C core (under the etcd client) writes its own copy of every connection error to
# stderr, outside shoal's log format; shoal reports those errors itself. Read once, when
# grpc is first imported, so it is set here, before any backend; an operator's value wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from shoal.discovery.base import (
    Discovery,
    DiscoveryError,
    expand_ranges,
    split_host_port,
    validate_entry,
)
from shoal.discovery.file import FileDiscovery
from shoal.discovery.kv import KVDiscovery, StoreError
from shoal.discovery.nodes import NodesDiscovery
from shoal.discovery.url import parse_discovery, split_discovery_url

__all__ = [
    "Discovery",
    "DiscoveryError",
    "FileDiscovery",
    "KVDiscovery",
    "NodesDiscovery",
    "StoreError",
    "expand_ranges",
    "parse_discovery",
    "split_discovery_url",
    "split_host_port",
    "validate_entry",
]
