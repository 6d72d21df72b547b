"""The discovery interface, its error type, and the entry helpers every backend shares."""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator

__all__ = [
    "Discovery",
    "DiscoveryError",
    "expand_ranges",
    "join_host_port",
    "parse_entries",
    "split_host_port",
    "validate_entry",
]

NOT_IMPLEMENTED = "not implemented in this discovery service"
_RANGE = re.compile(r"\[(\d+):(\d+)\]")


class DiscoveryError(Exception):
    """A discovery failure; watchers yield these instead of raising so the watch goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiscoveryError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)


class Discovery(abc.ABC):
    """A source of engine addresses.

    ``watch()`` yields the full current list of entries each time it changes, or a
    ``DiscoveryError`` when a fetch fails (the consumer logs ``Discovery error: ...``
    and keeps iterating). The iterator ends once ``close()`` has been called.
    """

    @abc.abstractmethod
    def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        """Yield entry lists on change and errors as they happen."""

    async def register(self, addr: str) -> None:
        """Announce ``addr`` (used by ``join``); static backends cannot."""
        raise NotImplementedError(NOT_IMPLEMENTED)

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop watching; a running ``watch()`` finishes at its next step."""


def expand_ranges(entry: str) -> list[str]:
    """Expand the first ``[from:to]`` (inclusive, decimal) in ``entry``.

    ``10.0.0.[1:3]:2375`` gives three addresses; an entry without a range is
    returned alone, and ``from > to`` gives nothing, as in classic Swarm.
    """
    match = _RANGE.search(entry)
    if match is None:
        return [entry]
    low, high = int(match.group(1)), int(match.group(2))
    head, tail = entry[: match.start()], entry[match.end() :]
    return [f"{head}{value}{tail}" for value in range(low, high + 1)]


def _addr_error(addr: str, why: str) -> ValueError:
    return ValueError(f"address {addr}: {why}" if addr else why)


def split_host_port(hostport: str) -> tuple[str, str]:
    """Split like Go's net.SplitHostPort, with Go's error messages."""
    missing_port = "missing port in address"
    too_many_colons = "too many colons in address"
    i = hostport.rfind(":")
    if i < 0:
        raise _addr_error(hostport, missing_port)
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _addr_error(hostport, "missing ']' in address")
        if end + 1 == len(hostport):
            raise _addr_error(hostport, missing_port)
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise _addr_error(hostport, too_many_colons)
            raise _addr_error(hostport, missing_port)
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise _addr_error(hostport, too_many_colons)
    if "[" in hostport[j:]:
        raise _addr_error(hostport, "unexpected '[' in address")
    if "]" in hostport[k:]:
        raise _addr_error(hostport, "unexpected ']' in address")
    return host, hostport[i + 1 :]


def join_host_port(host: str, port: str) -> str:
    """Join like Go's net.JoinHostPort (brackets around IPv6 hosts)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validate_entry(entry: str) -> str:
    """Return the canonical form of one engine address or raise ValueError.

    Classic Swarm takes ``host:port``. shoal also takes ``tcp://host:port`` and
    ``unix:///path``, passed on unchanged for the engine layer to dial.
    """
    if entry.startswith("unix://"):
        if not entry[len("unix://") :]:
            raise ValueError(f"invalid engine address {entry}: missing socket path")
        return entry
    if entry.startswith("tcp://"):
        split_host_port(entry[len("tcp://") :].rstrip("/"))
        return entry
    host, port = split_host_port(entry)
    return join_host_port(host, port)


def parse_entries(lines: list[str]) -> list[str]:
    """Expand ranges, drop empty items and validate the rest (first error wins)."""
    result: list[str] = []
    for line in lines:
        for entry in expand_ranges(line):
            if entry:
                result.append(validate_entry(entry))
    return result
