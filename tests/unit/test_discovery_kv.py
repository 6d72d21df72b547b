"""KV discovery: URL layout, the watch loop over a fake backend, and the Consul backend
against a local fake Consul HTTP API (no Consul binary can be installed here)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from shoal.discovery.base import DiscoveryError
from shoal.discovery.consul import ConsulBackend
from shoal.discovery.kv import KVBackend, KVDiscovery, StoreError, parse_kv_url
from shoal.discovery.url import parse_discovery
from shoal.leadership.store import LockLost, LockStore

# -- URLs and layout ------------------------------------------------------------------


def test_parse_kv_url_hosts_ports_prefix() -> None:
    url = parse_kv_url("etcd", "10.0.0.1:4001,10.0.0.2/custom/prefix/")
    assert url.hosts == [("10.0.0.1", 4001), ("10.0.0.2", 2379)]
    assert url.prefix == "custom/prefix"
    assert url.key("docker/swarm/nodes") == "custom/prefix/docker/swarm/nodes"
    assert parse_kv_url("zk", "h").hosts == [("h", 2181)]
    assert parse_kv_url("consul", "h:1").key("/docker/swarm/leader") == "docker/swarm/leader"


def test_parse_kv_url_rejects_bad_port() -> None:
    with pytest.raises(DiscoveryError):
        parse_kv_url("etcd", "h:notaport/x")
    with pytest.raises(DiscoveryError):
        parse_kv_url("etcd", "/x")


@pytest.mark.parametrize("scheme", ["etcd", "zk", "consul"])
def test_parse_discovery_builds_kv_discovery(scheme: str) -> None:
    disc = parse_discovery(f"{scheme}://127.0.0.1:1/test", 1.0, 3.0, {})
    assert isinstance(disc, KVDiscovery)
    assert disc.directory == "test/docker/swarm/nodes"
    assert disc.leader_key == "test/docker/swarm/leader"
    custom = parse_discovery(f"{scheme}://127.0.0.1:1/test", 1.0, 3.0, {"kv.path": "my/nodes"})
    assert isinstance(custom, KVDiscovery)
    assert custom.directory == "test/my/nodes"


def test_token_is_a_clear_error() -> None:
    with pytest.raises(DiscoveryError, match="no longer available"):
        parse_discovery("token://abc", 1.0, 0.0, {})


# -- the watch loop over a scripted backend -----------------------------------------------


@dataclass
class ScriptedBackend(KVBackend):
    """Each watch_tree call plays the next script: lists, then an exception or the end."""

    scripts: list[list[Any]]
    puts: list[tuple[str, str, float]] = field(default_factory=list)
    closed: bool = False

    async def watch_tree(self, directory: str, period: float) -> AsyncIterator[list[str]]:
        script = self.scripts.pop(0) if self.scripts else []
        for item in script:
            if isinstance(item, Exception):
                raise item
            yield item
        if not self.scripts:
            await asyncio.Event().wait()  # the last script stays open

    async def put_ttl(self, key: str, value: str, ttl: float) -> None:
        if self.closed:
            raise StoreError("closed")
        self.puts.append((key, value, ttl))

    def lock(self, key: str, value: str, ttl: float) -> LockStore:
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True


async def until(check: Any, timeout: float = 5) -> None:
    """Poll ``check`` (bounded)."""
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")


async def take(disc: KVDiscovery, n: int) -> list[Any]:
    out: list[Any] = []
    watch = disc.watch()
    async with asyncio.timeout(5):
        async for item in watch:
            out.append(item)
            if len(out) == n:
                break
    await watch.aclose()
    return out


async def test_watch_dedups_and_survives_store_errors() -> None:
    backend = ScriptedBackend(
        [
            [["b:2", "a:1"], ["a:1", "b:2"], ["a:1"], StoreError("etcd: down")],
            [["a:1"]],
        ]
    )
    disc = KVDiscovery(backend, parse_kv_url("etcd", "h/p"), heartbeat=0.01, ttl=3)
    items = await take(disc, 4)
    assert items == [["a:1", "b:2"], ["a:1"], DiscoveryError("etcd: down"), ["a:1"]]


async def test_watch_reports_unexpected_end_and_bad_entries() -> None:
    backend = ScriptedBackend([[["nonsense"]], [["a:1"]]])
    disc = KVDiscovery(backend, parse_kv_url("etcd", "h/p"), heartbeat=0.01, ttl=3)
    items = await take(disc, 3)
    assert isinstance(items[0], DiscoveryError)
    assert items[1] == DiscoveryError("Unexpected watch error")
    assert items[2] == ["a:1"]


async def test_close_ends_the_watch_and_register_writes_under_the_directory() -> None:
    backend = ScriptedBackend([[["a:1"]]])
    disc = KVDiscovery(backend, parse_kv_url("zk", "h/p"), heartbeat=10, ttl=3)
    await disc.register("c:3")
    assert backend.puts == [("p/docker/swarm/nodes/c:3", "c:3", 3)]
    seen: list[Any] = []

    async def consume() -> None:
        async for item in disc.watch():
            seen.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await disc.close()
    await asyncio.wait_for(task, 2)
    assert seen == [["a:1"]]
    with pytest.raises(DiscoveryError):
        await disc.register("c:3")


# -- a fake Consul agent -------------------------------------------------------------------


class FakeConsul:
    """The KV and session endpoints the backend uses, with TTLs scaled by ``scale``."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.kv: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.index = 1
        self.changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_put("/v1/session/create", self.session_create)
        self.app.router.add_put("/v1/session/renew/{sid}", self.session_renew)
        self.app.router.add_put("/v1/session/destroy/{sid}", self.session_destroy)
        self.app.router.add_get("/v1/kv/{key:.*}", self.kv_get)
        self.app.router.add_put("/v1/kv/{key:.*}", self.kv_put)
        self.runner = web.AppRunner(self.app)
        self.port = 0
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._reaper = asyncio.create_task(self.reap())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.runner.cleanup()

    async def bump(self) -> None:
        self.index += 1
        async with self.changed:
            self.changed.notify_all()

    async def reap(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for sid, session in list(self.sessions.items()):
                if session["expires"] <= now:
                    await self.invalidate(sid)

    async def invalidate(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        for key, entry in list(self.kv.items()):
            if entry.get("Session") == sid:
                if session["behavior"] == "delete":
                    del self.kv[key]
                else:
                    entry["Session"] = None
        await self.bump()

    def _ttl(self, text: str) -> float:
        return float(text.rstrip("s")) * self.scale

    async def session_create(self, request: web.Request) -> web.Response:
        body = await request.json() if await request.text() else {}
        sid = str(uuid.uuid4())
        ttl = self._ttl(body.get("ttl", "1000s"))
        self.sessions[sid] = {
            "ttl": ttl, "expires": time.monotonic() + ttl,
            "behavior": body.get("behavior", "release"),
        }
        return web.json_response({"ID": sid})

    async def session_renew(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=404, text="session not found")
        session["expires"] = time.monotonic() + session["ttl"]
        return web.json_response([{"ID": request.match_info["sid"]}])

    async def session_destroy(self, request: web.Request) -> web.Response:
        await self.invalidate(request.match_info["sid"])
        return web.json_response(True)

    def _entries(self, key: str, recurse: bool) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.kv if (k.startswith(key) if recurse else k == key))
        return [
            {"Key": k, "Session": self.kv[k].get("Session"), "Flags": 0,
             "Value": base64.b64encode(self.kv[k]["Value"]).decode(),
             "ModifyIndex": self.kv[k]["ModifyIndex"]}
            for k in keys
        ]

    async def kv_get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        recurse = "recurse" in request.query
        if "index" in request.query and int(request.query["index"]) >= self.index:
            wait = self._ttl(request.query.get("wait", "300s"))
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait(), wait)
                except TimeoutError:
                    pass
        entries = self._entries(key, recurse)
        headers = {"X-Consul-Index": str(self.index)}
        if not entries:
            return web.Response(status=404, headers=headers)
        return web.json_response(entries, headers=headers)

    async def kv_put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        value = await request.read()
        entry = self.kv.get(key)
        acquire = request.query.get("acquire")
        release = request.query.get("release")
        if acquire is not None:
            if acquire not in self.sessions:
                return web.Response(status=500, text="invalid session")
            if entry is not None and entry.get("Session") not in (None, acquire):
                return web.json_response(False)
            self.kv[key] = {"Value": value, "Session": acquire, "ModifyIndex": self.index + 1}
        elif release is not None:
            if entry is None or entry.get("Session") != release:
                return web.json_response(False)
            entry["Session"] = None
        else:
            session = entry.get("Session") if entry else None
            self.kv[key] = {"Value": value, "Session": session, "ModifyIndex": self.index + 1}
        await self.bump()
        return web.json_response(True)


@pytest_asyncio.fixture(loop_scope="function")
async def fake_consul() -> AsyncIterator[FakeConsul]:
    fake = FakeConsul(scale=0.05)  # Consul's 10 s minimum TTL becomes 0.5 s
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def consul_backend(fake: FakeConsul) -> ConsulBackend:
    return ConsulBackend(parse_kv_url("consul", f"127.0.0.1:{fake.port}/pre"), None)


async def test_consul_register_watch_and_expire(fake_consul: FakeConsul) -> None:
    joiner, manager = consul_backend(fake_consul), consul_backend(fake_consul)
    disc = KVDiscovery(manager, parse_kv_url("consul", "h/pre"), heartbeat=0.2, ttl=0)
    join = KVDiscovery(joiner, parse_kv_url("consul", "h/pre"), heartbeat=0.2, ttl=3)
    seen: list[Any] = []

    async def consume() -> None:
        async for item in disc.watch():
            seen.append(item)

    task = asyncio.create_task(consume())
    try:
        await join.register("10.0.0.1:2375")
        assert fake_consul.kv["pre/docker/swarm/nodes/10.0.0.1:2375"]["Value"] == b"10.0.0.1:2375"
        await join.register("10.0.0.1:2375")  # renews the same session
        assert len(fake_consul.sessions) == 1
        await until(lambda: not (["10.0.0.1:2375"] not in seen))
        # No more heartbeats: the session expires and its key is deleted.
        await until(lambda: not (seen[-1] != []))
        await join.register("10.0.0.1:2375")  # a fresh session after expiry
        await until(lambda: not (seen[-1] != ["10.0.0.1:2375"]))
    finally:
        await disc.close()
        await join.close()
        await asyncio.wait_for(task, 5)


async def test_consul_store_down_is_a_discovery_error() -> None:
    backend = ConsulBackend(parse_kv_url("consul", "127.0.0.1:9/pre"), None)
    disc = KVDiscovery(backend, parse_kv_url("consul", "h/pre"), heartbeat=0.05, ttl=0)
    items = await take(disc, 1)
    assert isinstance(items[0], DiscoveryError)
    assert str(items[0]).startswith("consul: ")
    await disc.close()


async def test_consul_lock_exclusive_renew_and_loss(fake_consul: FakeConsul) -> None:
    backend_a, backend_b = consul_backend(fake_consul), consul_backend(fake_consul)
    a = backend_a.lock("pre/docker/swarm/leader", "m1:1", 20)
    b = backend_b.lock("pre/docker/swarm/leader", "m2:2", 20)
    assert a.guarantee == 10.0
    await asyncio.wait_for(a.acquire(), 5)
    await a.renew()
    watcher = b.watch()
    assert await asyncio.wait_for(anext(watcher), 5) == "m1:1"
    contender = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.1)
    assert not contender.done()  # held by a
    await a.release()
    await asyncio.wait_for(contender, 5)
    with pytest.raises(LockLost):
        await a.renew()
    values = []
    async with asyncio.timeout(5):
        async for value in watcher:
            values.append(value)
            if value == "m2:2":
                break
    await watcher.aclose()
    # b stops renewing: its session expires (0.5 s scaled) and renew says so.
    await asyncio.sleep(0.8)
    with pytest.raises(LockLost):
        await b.renew()
    await backend_a.close()
    await backend_b.close()

