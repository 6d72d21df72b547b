"""The health probe: an engine that accepts connections but never answers is flagged at once.

The engines here are loopback sockets that answer `/_ping`, accept and stay silent, or
refuse; the client is shoal's real EngineClient.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.errors import EngineConnectionError
from shoal.cluster.events import EventBus
from shoal.cluster.records import EngineSpecs
from shoal.options import OptionsError, RawManage, parse_manage
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine

PING_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"
SETTINGS = EngineSettings(failure_retry=3, probe_timeout=0.3)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def answer_ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(PING_OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class Daemons:
    """Loopback stand-ins for dockerd, closed (with their connections) when the block ends."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Daemons:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self.servers:
            server.close()
        for writer in self.writers:
            writer.close()
        for server in self.servers:
            await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handlers see their connections close

    async def start(self, handler: Handler) -> str:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            await handler(reader, writer)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        self.servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def answering(self) -> str:
        return await self.start(answer_ping)

    async def silent(self) -> str:
        """A frozen daemon: the kernel accepts the connection, nobody reads or answers."""
        return await self.start(stay_silent)


async def stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()  # until the connection closes


@contextlib.asynccontextmanager
async def running(settings: EngineSettings = SETTINGS) -> AsyncIterator[tuple[Cluster, Daemons]]:
    """A cluster and its stand-in daemons, on the test's own loop; all closed at the end."""
    cluster = Cluster(settings, Scheduler(), EventBus())
    async with Daemons() as daemons:
        try:
            yield cluster, daemons
        finally:
            await asyncio.gather(*(e.stop() for e in cluster.all_engines()))


def join(cluster: Cluster, entry: str, name: str) -> Engine:
    """A validated, Healthy engine at ENTRY (its loops are not started)."""
    specs = EngineSpecs(daemon_id=f"ID-{name}", name=name, cpus=2, memory=2**32)
    return adopt_engine(cluster, entry, specs)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def swarm_actions(cluster: Cluster) -> list[str]:
    return [e["Action"] for e in cluster.bus.history if e.get("Type") == "swarm"]


def ranked(cluster: Cluster) -> list[str]:
    return [n.name for n in cluster.scheduler.select({}, cluster.node_views())]


async def test_a_silent_engine_is_unhealthy_after_one_probe() -> None:
    async with running() as (cluster, daemons):
        engine = join(cluster, await daemons.silent(), "frozen")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert not await engine.probe()
        assert loop.time() - started < 2  # the probe timeout, not an ordinary call's 30 s
        assert engine.state is EngineState.UNHEALTHY
        assert engine.health_indicator == 0
        assert swarm_actions(cluster) == ["engine_disconnect"]
        with pytest.raises(SchedulerError, match="No healthy node"):
            ranked(cluster)


async def test_an_answering_engine_passes_and_clears_its_failures() -> None:
    async with running() as (cluster, daemons):
        engine = join(cluster, await daemons.answering(), "alive")
        engine.record_failure("an earlier blip")
        assert await engine.probe()
        assert engine.state is EngineState.HEALTHY and engine.failure_count == 0
        assert engine.health_indicator == 100


async def test_a_refused_probe_counts_one_failure() -> None:
    async with running() as (cluster, _):
        engine = join(cluster, closed_port(), "gone")
        assert not await engine.probe()
        assert engine.state is EngineState.HEALTHY  # refused: counts toward the retry
        assert engine.failure_count == 1
        assert 0 < engine.health_indicator < 100


async def test_one_timed_out_call_moves_placement_elsewhere() -> None:
    """The first timeout lowers the node's health indicator: spread ranks it last."""
    async with running() as (cluster, daemons):
        hung = join(cluster, await daemons.silent(), "hung")
        join(cluster, await daemons.answering(), "alive")
        assert sorted(ranked(cluster)) == ["alive", "hung"]
        with pytest.raises(EngineConnectionError):
            await hung.call("GET", "/containers/json", timeout=0.2)
        assert hung.state is EngineState.HEALTHY and hung.health_indicator < 100
        for _ in range(4):
            assert ranked(cluster) == ["alive", "hung"]


async def test_the_probe_loop_runs_each_refresh_interval_and_stops_with_the_engine() -> None:
    async with running(replace(SETTINGS, refresh_min=0.05, refresh_max=0.1)) as (c, daemons):
        engine = join(c, await daemons.silent(), "frozen")
        flagged = asyncio.Event()
        c.add_state_listener(lambda _, action: flagged.set())
        task = engine._spawn(engine._probe_loop(), "probe")
        await asyncio.wait_for(flagged.wait(), 3)
        assert engine.state is EngineState.UNHEALTHY
        await engine.stop()
        assert task.done()


async def test_no_probe_when_its_timeout_is_zero() -> None:
    settings = replace(SETTINGS, refresh_min=0.01, refresh_max=0.01, probe_timeout=0)
    async with running(settings) as (c, daemons):
        engine = join(c, await daemons.silent(), "frozen")
        task = engine._spawn(engine._probe_loop(), "probe")
        await asyncio.wait_for(task, 1)
        assert engine.healthy


def test_probe_timeout_flag() -> None:
    raw = RawManage(args=("nodes://a:1",))
    assert parse_manage(raw, {}).engine_probe_timeout == 5.0
    assert parse_manage(replace(raw, engine_probe_timeout="1500ms"), {}).engine_probe_timeout == 1.5
    assert parse_manage(replace(raw, engine_probe_timeout="0"), {}).engine_probe_timeout == 0.0
    for bad, message in (
        ("x", 'invalid value "x" for flag --engine-probe-timeout: parse error'),
        ("-1s", "--engine-probe-timeout must not be negative"),
    ):
        with pytest.raises(OptionsError) as err:
            parse_manage(replace(raw, engine_probe_timeout=bad), {})
        assert err.value.message == message
