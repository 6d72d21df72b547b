"""Issue 4: `docker events` through shoal: every node's stream, honoured filters and times,
and no event lost (or doubled) across an engine restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, run_docker
from tests.integration.manager import Manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


class EventsCli:
    """`docker events --format '{{json .}}'` running against shoal, its lines collected."""

    def __init__(self, host: str, *args: str) -> None:
        self.host = host
        self.args = args
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventsCli:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.host
        self.proc = await asyncio.create_subprocess_exec(
            DOCKER_NEW, "events", "--format", "{{json .}}", *self.args, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))

    async def wait_for(self, check: Any, what: str, timeout: float = 30) -> None:
        async def done() -> bool:
            return bool(check(self.events))

        await wait_until(done, timeout, what, interval=0.1)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def starts_of(events: list[dict[str, Any]], names: set[str]) -> list[dict[str, Any]]:
    return [
        e for e in events
        if e.get("Action") == "start" and e["Actor"]["Attributes"].get("name") in names
    ]


async def ok(host: str, *args: str) -> str:
    result = await run_docker(host, *args, cli=DOCKER_NEW)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


async def test_start_events_from_three_nodes(manager: Manager) -> None:
    names = {f"ev{i}" for i in range(3)}
    async with EventsCli(manager.tcp, "--since", "1m", "--filter", "event=start") as cli:
        for i in range(3):
            await ok(manager.tcp, "run", "-d", "--name", f"ev{i}",
                     "-e", f"constraint:node==node-{i}", "busybox", "sleep", "300")
        await cli.wait_for(lambda ev: len(starts_of(ev, names)) >= 3, "three start events")
        assert all(e["Action"] == "start" for e in cli.events)
    by_name = {e["Actor"]["Attributes"]["name"]: e for e in starts_of(cli.events, names)}
    assert len(starts_of(cli.events, names)) == 3
    for i in range(3):
        event = by_name[f"ev{i}"]
        attrs = event["Actor"]["Attributes"]
        assert attrs["node.name"] == f"node-{i}"
        assert attrs["node.addr"] and attrs["node.id"] and attrs["node.ip"]
        assert event["from"] == f"busybox node:node-{i}"


async def test_since_until_and_filters_replay_history(manager: Manager) -> None:
    host = manager.tcp
    t0 = time.time()
    await ok(host, "network", "create", "node-1/evnet")
    await ok(host, "run", "-d", "--name", "hist", "-e", "constraint:node==node-1",
             "--net", "evnet", "busybox", "sleep", "300")
    await ok(host, "stop", "-t", "0", "hist")
    t1 = time.time() + 0.5
    await asyncio.sleep(1)
    await ok(host, "rm", "hist")  # after `until`: must not show up

    window = ("--since", f"{t0:.3f}", "--until", f"{t1:.3f}")

    async def replay(*filters: str) -> list[dict[str, Any]]:
        out = await ok(host, "events", "--format", "{{json .}}", *window, *filters)
        return [json.loads(line) for line in out.splitlines()]

    # A past `until` ends the stream by itself, with only what happened in the window.
    everything = await replay()
    actions = [(e["Type"], e["Action"]) for e in everything]
    assert ("network", "create") in actions
    assert ("container", "start") in actions
    assert ("container", "destroy") not in actions
    assert all(t0 * 1e9 <= e["timeNano"] <= t1 * 1e9 for e in everything)

    mine = await replay("--filter", "container=hist")
    assert {e["Action"] for e in mine} >= {"create", "start", "stop", "die"}
    assert all(e["Actor"]["Attributes"]["name"] == "hist" for e in mine)

    nets = await replay("--filter", "type=network")
    assert nets and all(e["Type"] == "network" for e in nets)
    assert {e["Action"] for e in nets} >= {"create", "connect", "disconnect"}

    assert await replay("--filter", "node=node-2") == []
    node1 = await replay("--filter", "node=node-1", "--filter", "event=die")
    assert [e["Actor"]["Attributes"]["name"] for e in node1] == ["hist"]

    # Bad times are refused before any streaming.
    async with aiohttp.ClientSession() as session:
        async with session.get(manager.url + "/events", params={"until": "soon"}) as resp:
            assert resp.status == 400
        async with session.get(manager.url + "/events",
                               params={"since": "20", "until": "10"}) as resp:
            assert resp.status == 400
    await ok(host, "network", "rm", "evnet")


async def test_no_event_lost_across_an_engine_restart(
    manager: Manager, sandbox3: Sandbox
) -> None:
    """`before` restarts with its node's dockerd, during the daemon's own start-up, before
    its API answers anyone: shoal can only get that `start` by resuming with `since`."""
    node = sandbox3.nodes[1]
    async with EventsCli(
        manager.tcp, "--filter", "event=start", "--filter", "event=engine_reconnect",
        "--filter", "event=engine_disconnect",
    ) as cli:
        await ok(manager.tcp, "run", "-d", "--name", "before", "--restart", "always",
                 "-e", "constraint:node==node-1", "busybox", "sleep", "300")
        await cli.wait_for(lambda ev: starts_of(ev, {"before"}), "the first start event")

        await node.kill()
        await manager.wait_nodes(1, status="Unhealthy", timeout=60)
        await node.start()
        # Straight on the engine, at once (shoal's stream of node-1 may not be back yet).
        await ok(node.docker_host, "run", "-d", "--name", "after", "busybox", "sleep", "300")
        await cli.wait_for(
            lambda ev: len(starts_of(ev, {"before"})) >= 2 and starts_of(ev, {"after"}),
            "the start events of the restart", timeout=60,
        )
        await manager.wait_nodes(3)
        await ok(manager.tcp, "run", "-d", "--name", "later", "-e", "constraint:node==node-1",
                 "busybox", "sleep", "300")
        await cli.wait_for(lambda ev: starts_of(ev, {"later"}), "the start event of `later`")

    # Each start exactly once: the inclusive `since` of a resume doubles nothing.
    before = starts_of(cli.events, {"before"})
    assert len(before) == 2
    assert len(starts_of(cli.events, {"after"})) == 1
    assert len(starts_of(cli.events, {"later"})) == 1
    swarm = [e for e in cli.events if e["Type"] == "swarm"
             and e["Actor"]["Attributes"]["node.name"] == "node-1"]
    assert [e["Action"] for e in swarm] == ["engine_disconnect", "engine_reconnect"]
    # The restart's `start` happened while shoal saw node-1 down: delivered by the resume.
    assert before[1]["timeNano"] < swarm[1]["timeNano"]
    assert all(e["Actor"]["Attributes"]["node.name"] == "node-1" for e in before)
    for name in ("before", "after", "later"):
        await run_docker(node.docker_host, "rm", "-f", name)
