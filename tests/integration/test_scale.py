"""shoal over 200 simulated engines: every node Healthy, counts right, spread placement.

The engines come from `shoal sandbox up --simulated`, run as a user would; the expected
figures are read from the engines themselves, not from shoal. Nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.conftest import DockerCli
from tests.integration.manager import Manager, free_port, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

NODES = 200
PER_NODE = 5


@dataclass
class Simulated:
    proc: asyncio.subprocess.Process
    discovery: str
    first_port: int

    def engine_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.first_port + index}"


async def engine_get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 200, (url, resp.status)
        return json.loads(await resp.read())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def simulated() -> AsyncIterator[Simulated]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal", "sandbox", "up", "--simulated", str(NODES),
        "--containers", str(PER_NODE), "--seed", "7",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line.startswith("discovery: nodes://127.0.0.1:["), line
        discovery = line.removeprefix("discovery: ")
        first, last = discovery.split("[", 1)[1].rstrip("]").split(":")
        assert int(last) - int(first) + 1 == NODES
        yield Simulated(proc, discovery, int(first))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def manager(simulated: Simulated) -> AsyncIterator[Manager]:
    port = free_port()
    mgr = Manager(["manage", "-H", f"tcp://127.0.0.1:{port}", simulated.discovery], port)
    await mgr.start()
    try:
        await mgr.wait_nodes(NODES, timeout=120)
        yield mgr
    finally:
        await mgr.stop()


async def engine_truth(simulated: Simulated) -> tuple[int, int]:
    """(all, running) container counts summed over the engines, asked directly."""
    total = running = 0
    async with aiohttp.ClientSession() as session:
        for i in range(NODES):
            listing = await engine_get(session,
                                       simulated.engine_url(i) + "/containers/json?all=1")
            total += len(listing)
            running += sum(1 for c in listing if c["State"] == "running")
    return total, running


async def test_info_shows_every_node_healthy(manager: Manager, docker_cli: DockerCli) -> None:
    result = await docker_cli(manager.tcp, "info")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Nodes: 200" in lines
    statuses = [line.split(":", 1)[1].strip() for line in lines if line.startswith("└ Status:")]
    assert len(statuses) == NODES
    assert set(statuses) == {"Healthy"}
    names = {line.split(":", 1)[0] for line in lines if line.startswith("node-")}
    assert names == {f"node-{i}" for i in range(NODES)}


async def test_ps_counts_match_the_engines(manager: Manager, simulated: Simulated,
                                           docker_cli: DockerCli) -> None:
    total, running = await engine_truth(simulated)
    assert total == NODES * PER_NODE
    assert 0 < running < total  # the simulator's mix of running and exited
    every = await docker_cli(manager.tcp, "ps", "-a", "-q", "--no-trunc")
    assert every.returncode == 0, every.stderr
    assert len(set(every.stdout.split())) == total
    live = await docker_cli(manager.tcp, "ps", "-q", "--no-trunc")
    assert live.returncode == 0, live.stderr
    assert len(set(live.stdout.split())) == running


async def test_spread_places_on_the_least_loaded_node(manager: Manager, simulated: Simulated,
                                                      docker_cli: DockerCli) -> None:
    """Empty most of one node behind shoal's back; the next two creates must land there."""
    target = 137
    url = simulated.engine_url(target)
    async with aiohttp.ClientSession() as session:
        listing = await engine_get(session, url + "/containers/json?all=1")
        for entry in listing[: PER_NODE - 2]:
            async with session.delete(url + f"/containers/{entry['Id']}?force=1") as resp:
                assert resp.status == 204

        async def shoal_sees_it() -> bool:
            nodes = await manager.node_status()
            return str(nodes[f"node-{target}"].get("Containers", "")).startswith("2 ")

        await wait_until(shoal_sees_it, 30, f"node-{target} with 2 containers in /info")
        for name in ("scale-a", "scale-b"):
            run = await docker_cli(manager.tcp, "run", "-d", "--name", name, "busybox:latest",
                                   "sleep", "600")
            assert run.returncode == 0, run.stderr
            placed = await engine_get(session, url + f"/containers/{name}/json")
            assert placed["State"]["Running"] is True
        stats = await engine_get(session, url + "/_sim/stats")
    assert stats["unknown"] == {}, f"shoal called routes the simulator lacks: {stats}"

