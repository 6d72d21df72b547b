"""Leader election over a fake lock store, the handler switch, and the replica handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import Hijack, Request, Response, StreamResponse, json_response, make_request
from shoal.api.replica import DEBUG_PATH, ReplicaHandler, WithDebug
from shoal.leadership.component import Leadership
from shoal.leadership.election import Election
from shoal.leadership.store import LockLost

GUARANTEE = 0.6


class FakeLock:
    """A lock whose expiry follows the store's rule: ``guarantee`` after the last renewal
    was sent. ``hang`` makes calls block (a partition), ``steal`` takes the lock away."""

    def __init__(self, guarantee: float = GUARANTEE) -> None:
        self.guarantee = guarantee
        self.held_until = 0.0
        self.hang = False
        self.stolen = False
        self.acquires = 0
        self.releases = 0
        self.values: asyncio.Queue[str | None] = asyncio.Queue()

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.Event().wait()

    async def acquire(self) -> None:
        await self._maybe_hang()
        await wait_for(lambda: not self.stolen, 30)
        self.acquires += 1
        self.held_until = time.monotonic() + self.guarantee

    async def renew(self) -> None:
        sent = time.monotonic()
        await self._maybe_hang()
        if self.stolen:
            raise LockLost("taken")
        self.held_until = sent + self.guarantee

    async def release(self) -> None:
        await self._maybe_hang()
        self.releases += 1
        self.held_until = 0.0

    async def watch(self) -> AsyncIterator[str | None]:
        while True:
            yield await self.values.get()


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, float]] = []

    async def __call__(self, leader: bool) -> None:
        self.changes.append((leader, time.monotonic()))


async def wait_for(check: Any, timeout: float = 5) -> None:
    """Poll ``check`` (bounded)."""
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not reached")


@contextlib.asynccontextmanager
async def running(election: Election) -> AsyncIterator[Election]:
    election.start()
    try:
        yield election
    finally:
        await election.stop()


async def test_acquire_makes_primary_and_logs_transition() -> None:
    lock, rec = FakeLock(), Recorder()
    async with running(Election(lock, "m1:1", rec, retry=0.05)) as election:
        await wait_for(lambda: election.leader)
        assert election.role() == ("primary", None)
        assert rec.changes[0][0] is True
        assert election.snapshot()["transitions"][0]["leader"] is True
        await asyncio.sleep(GUARANTEE)  # renewals keep it
        assert election.leader
    assert rec.changes[-1][0] is False  # stop() steps down
    assert lock.releases >= 1


async def test_partition_demotes_before_the_lock_can_expire() -> None:
    lock, rec = FakeLock(), Recorder()
    async with running(Election(lock, "m1:1", rec, retry=0.05)) as election:
        await wait_for(lambda: election.leader)
        await asyncio.sleep(0.2)
        lock.hang = True  # renewals now never answer
        await wait_for(lambda: not election.leader)
        demoted_at = rec.changes[-1][1]
        assert rec.changes[-1][0] is False
        # The invariant: stepped down while the store still counted the lock as ours.
        assert demoted_at < lock.held_until
        assert election.snapshot()["transitions"][-1]["reason"] == "renewal deadline passed"
        lock.hang = False


async def test_lock_lost_demotes_and_campaigns_again() -> None:
    lock, rec = FakeLock(), Recorder()
    async with running(Election(lock, "m1:1", rec, retry=0.05)) as election:
        await wait_for(lambda: election.leader)
        lock.stolen = True
        await wait_for(lambda: not election.leader)
        assert "lock lost" in election.transitions[-1].reason
        lock.stolen = False
        await wait_for(lambda: election.leader)
        assert lock.acquires == 2
        assert [t.leader for t in election.transitions] == [True, False, True]


async def test_follower_tracks_primary_but_never_names_itself_when_not_leader() -> None:
    lock, rec = FakeLock(), Recorder()
    lock.hang = True  # never wins: stays a replica
    async with running(Election(lock, "m1:1", rec, retry=0.05)) as election:
        assert election.role() == ("replica", None)
        waiter = asyncio.create_task(election.wait_primary())
        lock.values.put_nowait("m2:2")
        assert await asyncio.wait_for(waiter, 2) == "m2:2"
        assert election.role() == ("replica", "m2:2")
        lock.values.put_nowait("m1:1")  # a stale value naming us
        await wait_for(lambda: election.primary is None)
        lock.values.put_nowait(None)
        await asyncio.sleep(0.02)
        assert election.primary is None


class FakeWatchdog:
    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    def start(self) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False


async def answer(text: str) -> Any:
    async def handler(request: Request) -> Response | StreamResponse | Hijack:
        return json_response({"from": text})

    return handler


async def test_leadership_swaps_handler_then_watchdog() -> None:
    primary, replica = await answer("primary"), await answer("replica")
    dispatcher = Dispatcher(replica)
    dog = FakeWatchdog()
    leadership = Leadership(dispatcher, primary, replica, dog)
    await leadership.changed(True)
    assert dispatcher.handler is primary and dog.running
    await leadership.changed(True)
    assert dog.starts == 1
    await leadership.changed(False)
    assert dispatcher.handler is replica and not dog.running


# -- replica handler -----------------------------------------------------------------


class Source:
    def __init__(self, primary: str | None) -> None:
        self.primary = primary
        self.known = asyncio.Event()

    async def wait_primary(self) -> str:
        await self.known.wait()
        assert self.primary is not None
        return self.primary

    def snapshot(self) -> dict[str, Any]:
        return {"role": "replica", "primary": self.primary}


class Conn:
    """A client connection as the server hands it to a Hijack: reader plus captured writes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reader = asyncio.StreamReader()
        self.written = bytearray()
        transport = _Transport(self)
        self.writer = asyncio.StreamWriter(transport, _Protocol(), self.reader, loop)


class _Transport(asyncio.Transport):
    def __init__(self, conn: Conn) -> None:
        super().__init__()
        self.conn = conn
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.conn.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Protocol(asyncio.streams.FlowControlMixin):
    pass


async def run_hijack(handler: ReplicaHandler, request: Request, body: bytes = b"",
                     eof: bool = True) -> bytes:
    result = await handler(request)
    assert isinstance(result, Hijack)
    conn = Conn(asyncio.get_running_loop())
    conn.reader.feed_data(body)
    if eof:
        conn.reader.feed_eof()
    await asyncio.wait_for(result.run(request, conn.reader, conn.writer), 10)
    return bytes(conn.written)


async def test_replica_serves_ping_info_debug_locally() -> None:
    local = WithDebug(await answer("local"), lambda: {"role": "replica"})
    handler = ReplicaHandler(local, Source("127.0.0.1:9"))
    for target in ("/_ping", "/v1.41/info", DEBUG_PATH):
        response = await handler(make_request("GET", target))
        assert isinstance(response, Response)
        assert response.status == 200
    debug = await handler(make_request("GET", DEBUG_PATH))
    assert isinstance(debug, Response) and b'"role":"replica"' in debug.body


async def test_replica_forwards_head_and_body_raw() -> None:
    received = bytearray()

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.readuntil(b"\r\n\r\n"))
        received.extend(await reader.readexactly(5))
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(primary, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        handler = ReplicaHandler(await answer("local"), Source(f"127.0.0.1:{port}"))
        request = make_request("POST", "/v1.41/containers/create?name=x",
                               [("Content-Length", "5")])
        out = await run_hijack(handler, request, b"hello")
        assert out.startswith(b"HTTP/1.1 201 Created") and out.endswith(b"ok")
        assert received.startswith(b"POST /v1.41/containers/create?name=x HTTP/1.1\r\n")
        assert received.endswith(b"\r\n\r\nhello")
    finally:
        server.close()
        await server.wait_closed()


async def test_replica_unreachable_primary_is_500() -> None:
    handler = ReplicaHandler(await answer("local"), Source("127.0.0.1:9"))
    out = await run_hijack(handler, make_request("GET", "/containers/json"))
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b"Unable to reach primary cluster manager (" in out
    assert out.rstrip().endswith(b': 127.0.0.1:9"}')


async def test_replica_waits_for_a_primary_and_gives_up_when_client_leaves() -> None:
    source = Source(None)
    handler = ReplicaHandler(await answer("local"), source)
    out = await run_hijack(handler, make_request("GET", "/containers/json"), eof=True)
    assert out == b""  # the client is gone: nothing to answer
    gave_up = ReplicaHandler(await answer("local"), source, max_wait=0.3)
    out = await run_hijack(gave_up, make_request("GET", "/containers/json"), eof=False)
    assert b"No elected primary cluster manager" in out


@pytest.mark.parametrize("leader", [True, False])
async def test_role_reported_for_info(leader: bool) -> None:
    lock = FakeLock()
    lock.hang = not leader
    async with running(Election(lock, "m1:1", Recorder(), retry=0.05)) as election:
        if leader:
            await wait_for(lambda: election.leader)
            assert election.role() == ("primary", None)
        else:
            lock.values.put_nowait("m3:3")
            await wait_for(lambda: election.primary == "m3:3")
            assert election.role() == ("replica", "m3:3")
