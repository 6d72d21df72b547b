"""Issue 5: three `manage --replication` managers over real etcd and ZooKeeper.

Each manager reaches the store through its own CutProxy, so one of them can be cut off
from the store (a partition) while its API stays reachable for the checks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pexpect
import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, DockerCli
from tests.integration.manager import Manager, free_port, wait_until
from tests.integration.stores import CutProxy, Etcd, Store, ZooKeeper
from tests.integration.test_kv_discovery import Joiner

pytestmark = pytest.mark.asyncio(loop_scope="session")

TTL = 4.0
HEARTBEAT = 1.0
DEBUG_PATH = "/debug/shoal/leadership"


@dataclass
class HA:
    """The store, the managers (with their proxies) and the engines' joiners."""

    store: Store
    managers: list[Manager]
    proxies: list[CutProxy]
    joiners: list[Joiner]

    def manager_args(self, i: int) -> list[str]:
        m = self.managers[i]
        return [
            "--debug", "manage", "-H", f"tcp://127.0.0.1:{m.port}",
            "--replication", "--advertise", f"127.0.0.1:{m.port}",
            "--replication-ttl", f"{TTL:g}s", "--heartbeat", f"{HEARTBEAT:g}s",
            "--engine-refresh-min-interval", "1s", "--engine-refresh-max-interval", "2s",
            self.store.url("ha", self.proxies[i].addr),
        ]

    async def roles(self, managers: list[Manager] | None = None) -> dict[int, tuple[str, str]]:
        """{manager index: (role, primary)} from /info of the running managers."""
        out: dict[int, tuple[str, str]] = {}
        for i, m in enumerate(self.managers):
            if managers is not None and m not in managers:
                continue
            status = dict((await m.info())["SystemStatus"])
            out[i] = (status.get("Role", ""), status.get("Primary", ""))
        return out

    async def wait_single_primary(self, alive: list[Manager], timeout: float) -> int:
        """Index of the one primary once every alive manager agrees on it."""
        found: list[int] = []

        async def agreed() -> bool:
            roles = await self.roles(alive)
            primaries = [i for i, (role, _) in roles.items() if role == "primary"]
            if len(primaries) != 1:
                return False
            addr = f"127.0.0.1:{self.managers[primaries[0]].port}"
            if all(p == addr for role, p in roles.values() if role == "replica"):
                found[:] = primaries
                return True
            return False

        await wait_until(agreed, timeout, "exactly one primary that every replica names")
        return found[0]


async def debug(manager: Manager) -> dict[str, Any]:
    async with manager.session() as session, session.get(manager.url + DEBUG_PATH) as resp:
        assert resp.status == 200
        return dict(await resp.json())


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["etcd", "zk"])
async def ha(request: pytest.FixtureRequest, sandbox3: Sandbox) -> AsyncIterator[HA]:
    store: Store = Etcd() if request.param == "etcd" else ZooKeeper()
    await store.start()
    proxies = [CutProxy(store.port) for _ in range(3)]
    joiners = [Joiner(node.addr, store.url("ha")) for node in sandbox3.nodes]
    cluster = HA(store, [], proxies, joiners)
    try:
        for proxy in proxies:
            await proxy.start()
        for joiner in joiners:
            await joiner.start()
        for i in range(3):
            cluster.managers.append(Manager([], free_port()))
            cluster.managers[i].args = cluster.manager_args(i)
        for m in cluster.managers:
            await m.start()
        for m in cluster.managers:
            await m.wait_nodes(3, timeout=60)
        yield cluster
    finally:
        for m in cluster.managers:
            await m.stop()
        for joiner in joiners:
            await joiner.kill()
        for proxy in proxies:
            await proxy.close()
        await store.close()


async def test_exactly_one_primary(ha: HA, docker_cli: DockerCli) -> None:
    primary = await ha.wait_single_primary(ha.managers, 30)
    for i, m in enumerate(ha.managers):
        info = await docker_cli(m.tcp, "info")
        assert info.returncode == 0, info.stderr
        if i == primary:
            assert "Role: primary" in info.stdout
        else:
            assert "Role: replica" in info.stdout
            assert f"Primary: 127.0.0.1:{ha.managers[primary].port}" in info.stdout
        assert "Nodes: 3" in info.stdout
        async with m.session() as session, session.get(m.url + "/_ping") as resp:
            assert resp.status == 200


async def test_docker_through_a_replica(ha: HA, docker_cli: DockerCli) -> None:
    primary = await ha.wait_single_primary(ha.managers, 30)
    replica = ha.managers[(primary + 1) % 3]
    host = replica.tcp
    run = await docker_cli(host, "run", "-d", "--name", "ha-ticker", "busybox", "sh", "-c",
                           "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done")
    assert run.returncode == 0, run.stderr
    try:
        ps = await docker_cli(host, "ps", "--format", "{{.Names}}")
        assert "ha-ticker" in ps.stdout
        env = dict(os.environ, DOCKER_HOST=host)
        proc = await asyncio.create_subprocess_exec(
            DOCKER_NEW, "logs", "-f", "ha-ticker", env=env, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
                     for _ in range(5)]
        finally:
            proc.kill()
            await proc.wait()
        assert lines[:3] == ["tick-0", "tick-1", "tick-2"]

        def interactive() -> tuple[int | None, str]:
            child = pexpect.spawn(DOCKER_NEW, ["exec", "-it", "ha-ticker", "sh"], env=env,
                                  timeout=20, encoding="utf-8")
            child.expect("# ")
            child.sendline("echo exec-$((20+22))")
            child.expect("exec-42")
            child.sendline("exit")
            child.expect(pexpect.EOF)
            child.close()
            subprocess.run([DOCKER_NEW, "run", "-dit", "--name", "ha-attach", "busybox", "sh"],
                           env=env, check=True, capture_output=True)
            child = pexpect.spawn(DOCKER_NEW, ["attach", "ha-attach"], env=env, timeout=20,
                                  encoding="utf-8")
            child.sendline("echo attached-$((3*3))")
            child.expect("attached-9")
            child.sendline("exit")
            child.expect(pexpect.EOF)
            child.close()
            return child.exitstatus, ""

        status, _ = await asyncio.to_thread(interactive)
        assert status == 0
    finally:
        await docker_cli(host, "rm", "-f", "ha-ticker", "ha-attach")


async def test_failover_and_rejoin(ha: HA, docker_cli: DockerCli) -> None:
    primary = await ha.wait_single_primary(ha.managers, 30)
    old = ha.managers[primary]
    survivors = [m for m in ha.managers if m is not old]
    assert old.proc is not None
    killed_at = time.monotonic()
    old.proc.kill()  # SIGKILL: no resign, the lock must expire
    await old.proc.wait()
    new = await ha.wait_single_primary(survivors, TTL + HEARTBEAT + 10)
    elapsed = time.monotonic() - killed_at
    print(f"failover: new primary after {elapsed:.2f}s (ttl {TTL}s, heartbeat {HEARTBEAT}s)")
    assert new != primary
    for m in survivors:
        ps = await docker_cli(m.tcp, "ps")
        assert ps.returncode == 0, ps.stderr
    run = await docker_cli(survivors[0].tcp, "run", "--rm", "busybox", "echo", "after-failover")
    assert run.returncode == 0 and "after-failover" in run.stdout, run.stderr
    await old.start()
    assert await ha.wait_single_primary(ha.managers, 30) == new
    role, _ = (await ha.roles([old]))[primary]
    assert role == "replica"


async def test_partition_demotes_before_another_is_promoted(ha: HA) -> None:
    primary = await ha.wait_single_primary(ha.managers, 30)
    cut = ha.managers[primary]
    others = [m for m in ha.managers if m is not cut]
    ha.proxies[primary].cut()
    try:
        new = await ha.wait_single_primary(others, TTL * 2 + HEARTBEAT + 10)
        assert new != primary
        snapshots = {i: await debug(m) for i, m in enumerate(ha.managers)}
        assert snapshots[primary]["role"] == "replica"
        lost = [t["time"] for t in snapshots[primary]["transitions"] if not t["leader"]]
        gained = [t["time"] for t in snapshots[new]["transitions"] if t["leader"]]
        assert lost and gained
        # The cut primary stepped down before the new one stepped up.
        assert lost[-1] < gained[-1], snapshots
        print("partition transitions:", {i: s["transitions"] for i, s in snapshots.items()})
        assert_no_overlap([s["transitions"] for s in snapshots.values()])
    finally:
        ha.proxies[primary].heal()
    assert await ha.wait_single_primary(ha.managers, 30) == new


def assert_no_overlap(logs: list[list[dict[str, Any]]]) -> None:
    """No two managers' leadership intervals (acquired .. lost, or .. now) intersect."""
    intervals: list[tuple[float, float]] = []
    for transitions in logs:
        start: float | None = None
        for t in transitions:
            if t["leader"]:
                start = t["time"]
            elif start is not None:
                intervals.append((start, t["time"]))
                start = None
        if start is not None:
            intervals.append((start, float("inf")))
    intervals.sort()
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end <= next_start, intervals


async def test_store_down_keeps_serving(ha: HA, docker_cli: DockerCli) -> None:
    await ha.wait_single_primary(ha.managers, 30)
    await ha.store.stop()
    try:
        async def reports_error() -> bool:
            roles_ok = True
            for m in ha.managers:
                info = await m.info()
                if not any(k == "Discovery Error" for k, _ in info["SystemStatus"]):
                    roles_ok = False
            return roles_ok

        await wait_until(reports_error, 30, "every manager to report the store error")
        for m in ha.managers:
            async with m.session() as session, session.get(m.url + "/_ping") as resp:
                assert resp.status == 200
            info = await docker_cli(m.tcp, "info")
            assert info.returncode == 0 and "Nodes: 3" in info.stdout, info.stderr
    finally:
        await ha.store.start()
    await ha.wait_single_primary(ha.managers, 60)
    ps = await docker_cli(ha.managers[0].tcp, "ps")
    assert ps.returncode == 0, ps.stderr

