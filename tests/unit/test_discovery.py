"""Discovery: URL parsing, address validation, ranges, nodes and file backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.discovery import (
    DiscoveryError,
    FileDiscovery,
    NodesDiscovery,
    expand_ranges,
    parse_discovery,
    split_discovery_url,
    split_host_port,
    validate_entry,
)
from shoal.discovery.file import parse_file_content
from shoal.discovery.nodes import parse_nodes

HINT = ", please check you are using the correct discovery (missing token:// ?)"


# --- ranges ---------------------------------------------------------------


def test_expand_range_in_host() -> None:
    assert expand_ranges("10.0.0.[10:12]:2375") == [
        "10.0.0.10:2375",
        "10.0.0.11:2375",
        "10.0.0.12:2375",
    ]


def test_expand_range_in_port() -> None:
    assert expand_ranges("192.168.1.2:[2:4]375") == [
        "192.168.1.2:2375",
        "192.168.1.2:3375",
        "192.168.1.2:4375",
    ]


def test_expand_only_first_range() -> None:
    assert expand_ranges("h[1:2]:[3:4]") == ["h1:[3:4]", "h2:[3:4]"]


def test_expand_without_range_and_reversed_range() -> None:
    assert expand_ranges("a:1") == ["a:1"]
    assert expand_ranges("h[5:3]:1") == []
    assert expand_ranges("[::1]:2375") == ["[::1]:2375"]


# --- host:port ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:1", ("a", "1")),
        (":2375", ("", "2375")),
        ("[::1]:2375", ("::1", "2375")),
        ("host:", ("host", "")),
    ],
)
def test_split_host_port_ok(text: str, expected: tuple[str, str]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "address a: missing port in address"),
        ("a:b:c", "address a:b:c: too many colons in address"),
        ("[::1", "address [::1: missing ']' in address"),
        ("[::1]", "address [::1]: missing port in address"),
        ("[a]b:1", "address [a]b:1: missing port in address"),
        ("[a]:1:2", "address [a]:1:2: too many colons in address"),
        ("a[b:1", "address a[b:1: unexpected '[' in address"),
        ("a]b:1", "address a]b:1: unexpected ']' in address"),
        ("", "missing port in address"),
    ],
)
def test_split_host_port_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        split_host_port(text)
    assert str(info.value) == message


def test_validate_entry_engine_urls() -> None:
    assert validate_entry("unix:///var/run/docker.sock") == "unix:///var/run/docker.sock"
    assert validate_entry("tcp://1.2.3.4:2375") == "tcp://1.2.3.4:2375"
    with pytest.raises(ValueError, match="missing socket path"):
        validate_entry("unix://")
    with pytest.raises(ValueError, match="missing port"):
        validate_entry("tcp://1.2.3.4")


# --- URL parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("a:1,b:2", ("nodes", "a:1,b:2")),
        ("nodes://a:1", ("nodes", "a:1")),
        ("file:///tmp/x", ("file", "/tmp/x")),
        ("consul://h:8500/p", ("consul", "h:8500/p")),
        ("tcp://a:1,tcp://b:2", ("nodes", "tcp://a:1,tcp://b:2")),
        ("unix:///x.sock", ("nodes", "unix:///x.sock")),
    ],
)
def test_split_discovery_url(url: str, expected: tuple[str, str]) -> None:
    assert split_discovery_url(url) == expected


def test_parse_discovery_picks_backend() -> None:
    nodes = parse_discovery("a:1,b:2", 1.0, 0.0, {})
    assert isinstance(nodes, NodesDiscovery)
    assert nodes.entries == ["a:1", "b:2"]
    file = parse_discovery("file:///tmp/cluster", 5.0, 0.0, {})
    assert isinstance(file, FileDiscovery)
    assert (file.path, file.heartbeat) == ("/tmp/cluster", 5.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://x", "discovery service not supported"),
        (
            "token://abc",
            "token discovery is no longer available: "
            "the hosted discovery service was shut down in 2019",
        ),
        ("etcd://127.0.0.1:x/p", "invalid etcd address: '127.0.0.1:x'"),
        ("consul://127.0.0.1:0/p", "invalid consul address: '127.0.0.1:0'"),
        ("zk:///p", "zk: no store address given"),
        ("nodes://a", "address a: missing port in address" + HINT),
    ],
)
def test_parse_discovery_errors(url: str, message: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_discovery(url, 1.0, 0.0, {})
    assert str(info.value) == message


# --- nodes ------------------------------------------------------------------


def test_parse_nodes_ranges_and_urls() -> None:
    assert parse_nodes("10.0.0.[1:2]:2375,unix:///s[0:1].sock,tcp://h:1") == [
        "10.0.0.1:2375",
        "10.0.0.2:2375",
        "unix:///s0.sock",
        "unix:///s1.sock",
        "tcp://h:1",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a:1,", "missing port in address" + HINT),
        ("a:1,b", "address b: missing port in address" + HINT),
        ("1.2.3.[1:2]", "address 1.2.3.1: missing port in address" + HINT),
    ],
)
def test_parse_nodes_errors(spec: str, message: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_nodes(spec)
    assert str(info.value) == message


async def test_nodes_watch_sends_once_and_ends_on_close() -> None:
    backend = NodesDiscovery("a:1,b:2")
    watch = backend.watch()
    assert await anext(watch) == ["a:1", "b:2"]
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    assert not pending.done()
    await backend.close()
    with pytest.raises(StopAsyncIteration):
        await pending


async def test_nodes_register_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="not implemented in this discovery service"):
        await NodesDiscovery("a:1").register("x:1")


# --- file -------------------------------------------------------------------


def test_parse_file_content() -> None:
    text = "\n# comment\n  1.1.1.1:1  \n2.2.2.2:2 # inline\n\n3.3.3.[1:2]:3\n#x:1\n"
    assert parse_file_content(text) == ["1.1.1.1:1", "2.2.2.2:2", "3.3.3.1:3", "3.3.3.2:3"]
    assert parse_file_content("") == []


def test_parse_file_content_bad_entry_fails_whole_fetch() -> None:
    with pytest.raises(ValueError, match="address nope: missing port in address"):
        parse_file_content("1.1.1.1:1\nnope\n")


async def _next(it: AsyncIterator[list[str] | DiscoveryError]) -> list[str] | DiscoveryError:
    return await asyncio.wait_for(anext(it), 5)


async def test_file_watch_change_error_and_recovery(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("a:1\n")
    backend = FileDiscovery(str(path), 0.01)
    watch = backend.watch()
    assert await _next(watch) == ["a:1"]
    path.write_text("a:1\nb:[1:2]\n")
    assert await _next(watch) == ["a:1", "b:1", "b:2"]
    path.unlink()
    error = await _next(watch)
    assert isinstance(error, DiscoveryError)
    assert str(error) == (
        f"failed to read '{path}': open {path}: no such file or directory"
    )
    path.write_text("c:3\n")
    # Errors repeat while the file is missing; the next list is the new content.
    item = await _next(watch)
    while isinstance(item, DiscoveryError):
        item = await _next(watch)
    assert item == ["c:3"]
    await backend.close()
    with pytest.raises(StopAsyncIteration):
        await _next(watch)


async def test_file_watch_only_yields_on_change(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("a:1\n")
    backend = FileDiscovery(str(path), 0.01)
    fetches = 0
    real_fetch = backend.fetch

    async def counting_fetch() -> list[str]:
        nonlocal fetches
        fetches += 1
        if fetches == 4:
            path.write_text("b:2\n")
        return await real_fetch()

    backend.fetch = counting_fetch  # type: ignore[method-assign]
    watch = backend.watch()
    assert await _next(watch) == ["a:1"]
    assert await _next(watch) == ["b:2"]
    assert fetches == 4  # fetches 2 and 3 saw no change and yielded nothing
    await backend.close()


async def test_file_missing_at_start_then_created(tmp_path: Path) -> None:
    path = tmp_path / "later"
    backend = FileDiscovery(str(path), 0.01)
    watch = backend.watch()
    first = await _next(watch)
    assert isinstance(first, DiscoveryError)
    assert str(first).startswith(f"failed to read '{path}': ")
    path.write_text("a:1\n")
    item = await _next(watch)
    while isinstance(item, DiscoveryError):
        item = await _next(watch)
    assert item == ["a:1"]
    await backend.close()


async def test_file_bad_entry_is_yielded_error(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_text("nope\n")
    backend = FileDiscovery(str(path), 60)
    item = await _next(backend.watch())
    assert item == DiscoveryError("address nope: missing port in address")
    await backend.close()
