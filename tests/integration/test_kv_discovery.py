"""Issue 5: `join`, `list` and `manage` through real etcd and ZooKeeper stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DockerCli
from tests.integration.manager import Manager, free_port, wait_until
from tests.integration.stores import Etcd, Store, ZooKeeper

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEARTBEAT = "1s"
TTL = "3s"


class Joiner:
    """A `shoal join` process, stopped by PID."""

    def __init__(self, advertise: str, url: str) -> None:
        self.advertise = advertise
        self.url = url
        self.log_path = tempfile.mktemp(prefix="shoal-join-", suffix=".log")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shoal", "join", "--advertise", self.advertise,
                "--heartbeat", HEARTBEAT, "--ttl", TTL, self.url, stdout=log, stderr=log,
            )
        finally:
            os.close(log)

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


async def shoal_list(url: str, timeout: str = "5s") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal", "list", "--timeout", timeout, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["etcd", "zk"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    st: Store = Etcd() if request.param == "etcd" else ZooKeeper()
    await st.start()
    try:
        yield st
    finally:
        await st.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def joined(store: Store, sandbox3: Sandbox) -> AsyncIterator[list[Joiner]]:
    url = store.url("disc")
    joiners = [Joiner(node.addr, url) for node in sandbox3.nodes]
    for joiner in joiners:
        await joiner.start()
    try:
        yield joiners
    finally:
        for joiner in joiners:
            await joiner.kill()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def manager(store: Store, joined: list[Joiner]) -> AsyncIterator[Manager]:
    port = free_port()
    mgr = Manager(
        ["manage", "-H", f"tcp://127.0.0.1:{port}", "--heartbeat", HEARTBEAT,
         "--engine-refresh-min-interval", "1s", "--engine-refresh-max-interval", "2s",
         store.url("disc")],
        port,
    )
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.stop()


async def test_list_prints_registered_engines(
    store: Store, joined: list[Joiner], sandbox3: Sandbox
) -> None:
    wanted = sorted(node.addr for node in sandbox3.nodes)

    async def listed() -> bool:
        code, out, _ = await shoal_list(store.url("disc"))
        return code == 0 and sorted(out.split()) == wanted

    await wait_until(listed, 20, "shoal list to print the three joined engines")


async def test_list_store_down_is_fatal() -> None:
    code, _, err = await shoal_list(f"etcd://127.0.0.1:{free_port()}/nothing", "2s")
    assert code == 1
    assert err.startswith("shoal: ")


async def test_manage_sees_joined_engines(manager: Manager, docker_cli: DockerCli) -> None:
    await manager.wait_nodes(3, timeout=60)
    info = await docker_cli(manager.tcp, "info")
    assert info.returncode == 0, info.stderr
    assert "Nodes: 3" in info.stdout


async def test_stopped_join_leaves_after_ttl(
    manager: Manager, joined: list[Joiner], sandbox3: Sandbox
) -> None:
    await manager.wait_nodes(3, timeout=60)
    gone = sandbox3.nodes[2].addr
    await joined[2].kill()

    async def left() -> bool:
        nodes = await manager.node_status()
        return len(nodes) == 2 and all(n["Addr"] != gone for n in nodes.values())

    await wait_until(left, 20, f"{gone} to leave after the join TTL")
    # Registering again brings it back.
    joined[2] = Joiner(gone, joined[2].url)
    await joined[2].start()
    await manager.wait_nodes(3, timeout=30)


async def test_store_down_keeps_cache_and_recovers(
    store: Store, manager: Manager, docker_cli: DockerCli
) -> None:
    await manager.wait_nodes(3, timeout=60)
    await store.stop()
    try:
        async def reports_error() -> bool:
            info = await manager.info()
            return any(k == "Discovery Error" for k, _ in info["SystemStatus"])

        await wait_until(reports_error, 20, "the store error in /info")
        info = await docker_cli(manager.tcp, "info")
        assert info.returncode == 0, info.stderr
        assert "Nodes: 3" in info.stdout
        assert "Discovery Error" in info.stdout
        ps = await docker_cli(manager.tcp, "ps", "-a")
        assert ps.returncode == 0, ps.stderr
    finally:
        await store.start()

    async def recovered() -> bool:
        info = await manager.info()
        return not any(k == "Discovery Error" for k, _ in info["SystemStatus"])

    await wait_until(recovered, 30, "the discovery error to clear")
    await manager.wait_nodes(3, timeout=30)
