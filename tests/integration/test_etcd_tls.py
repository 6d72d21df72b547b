"""Issue 13: `join`, `list`, `manage` and leader election through an etcd that serves its
clients over TLS only and requires a client certificate signed by its CA
(``--client-cert-auth``); clients without one are refused with a clear one-line error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.certs import CertPaths, make_ca_and_certs
from tests.integration.conftest import DockerCli, sandbox_tag
from tests.integration.manager import FAST_REFRESH, Manager, free_port, wait_until
from tests.integration.stores import Etcd

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEARTBEAT = "1s"
TTL = "3s"
PREFIX = "tls"


@dataclass(frozen=True)
class PKI:
    """The store's CA and certificates, and a second CA that the store does not trust."""

    store: CertPaths
    other: CertPaths

    def opts(self, paths: CertPaths | None = None) -> list[str]:
        """``--discovery-opt`` flags for a client certificate (the store CA's by default)."""
        p = paths or self.store
        return [
            "--discovery-opt", f"kv.cacertfile={self.store.ca}",
            "--discovery-opt", f"kv.certfile={p.client_cert}",
            "--discovery-opt", f"kv.keyfile={p.client_key}",
        ]


class Joiner:
    """A `shoal join` process with extra flags, stopped by PID; its output is kept."""

    def __init__(self, advertise: str, url: str, opts: list[str]) -> None:
        self.args = ["join", "--advertise", advertise, "--heartbeat", HEARTBEAT,
                     "--ttl", TTL, *opts, url]
        self.log_path = tempfile.mktemp(prefix="shoal-join-", suffix=".log")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shoal", *self.args, stdout=log, stderr=log
            )
        finally:
            os.close(log)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


async def shoal_list(url: str, opts: list[str], timeout: str = "5s") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal", "list", "--timeout", timeout, *opts, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


def rejections(store: Etcd) -> int:
    """How many client connections etcd has turned away so far (its own log says so)."""
    return store.log().count("rejected connection from")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    base = tmp_path_factory.mktemp("etcd-pki")
    return PKI(make_ca_and_certs(base / "store"), make_ca_and_certs(base / "other"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def etcd(pki: PKI) -> AsyncIterator[Etcd]:
    store = Etcd(tls=pki.store)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox1(request: pytest.FixtureRequest, host_ready: None) -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(1, tag=sandbox_tag(request.module.__name__), registry=False)
    async with sandbox:
        yield sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def joined(etcd: Etcd, pki: PKI, sandbox1: Sandbox) -> AsyncIterator[Joiner]:
    joiner = Joiner(sandbox1.nodes[0].addr, etcd.url(PREFIX), pki.opts())
    await joiner.start()
    try:
        yield joiner
    finally:
        await joiner.kill()


def tls_manager(etcd: Etcd, pki: PKI, *extra: str, port: int | None = None) -> Manager:
    port = port or free_port()
    return Manager(
        ["manage", "-H", f"tcp://127.0.0.1:{port}", "--heartbeat", HEARTBEAT, *FAST_REFRESH,
         *extra, *pki.opts(), etcd.url(PREFIX)],
        port,
    )


async def test_join_registers_and_list_reads_over_tls(
    etcd: Etcd, pki: PKI, joined: Joiner, sandbox1: Sandbox
) -> None:
    wanted = [sandbox1.nodes[0].addr]

    async def listed() -> bool:
        code, out, _ = await shoal_list(etcd.url(PREFIX), pki.opts())
        return code == 0 and out.split() == wanted

    await wait_until(listed, 20, "shoal list over TLS to print the joined engine")
    assert "Registering on the discovery service" in joined.log()
    assert "level=error" not in joined.log(), joined.log()


async def test_manage_discovers_engine_over_tls(
    etcd: Etcd, pki: PKI, joined: Joiner, sandbox1: Sandbox, docker_cli: DockerCli
) -> None:
    mgr = tls_manager(etcd, pki)
    await mgr.start()
    try:
        await mgr.wait_nodes(1, timeout=60)
        nodes = await mgr.node_status()
        assert [n["Addr"] for n in nodes.values()] == [sandbox1.nodes[0].addr]
        info = await docker_cli(mgr.tcp, "info")
        assert info.returncode == 0, info.stderr
        assert "Nodes: 1" in info.stdout
        assert "Discovery Error" not in info.stdout
    finally:
        await mgr.stop()


async def test_leader_election_over_tls(etcd: Etcd, pki: PKI, joined: Joiner) -> None:
    managers: list[Manager] = []
    for _ in range(2):
        port = free_port()
        managers.append(tls_manager(
            etcd, pki, "--replication", "--advertise", f"127.0.0.1:{port}",
            "--replication-ttl", "4s", port=port,
        ))
    try:
        for m in managers:
            await m.start()
        roles: dict[int, tuple[str, str]] = {}

        async def one_primary(alive: list[Manager]) -> bool:
            roles.clear()
            for i, m in enumerate(managers):
                if m in alive:
                    status = dict((await m.info())["SystemStatus"])
                    roles[i] = (status.get("Role", ""), status.get("Primary", ""))
            primaries = [i for i, (role, _) in roles.items() if role == "primary"]
            if len(primaries) != 1:
                return False
            addr = f"127.0.0.1:{managers[primaries[0]].port}"
            return all(p == addr for role, p in roles.values() if role == "replica")

        await wait_until(lambda: one_primary(managers), 30, "one primary and one replica")
        assert sorted(role for role, _ in roles.values()) == ["primary", "replica"]
        primary = next(i for i, (role, _) in roles.items() if role == "primary")

        # The primary dies without releasing the lock; the replica, watching the lock over
        # TLS, takes it once the dead primary's lease runs out.
        dead = managers[primary].proc
        assert dead is not None
        dead.send_signal(signal.SIGKILL)
        await dead.wait()
        with contextlib.suppress(OSError):
            os.unlink(managers[primary].log_path)
        survivor = managers[1 - primary]
        await wait_until(lambda: one_primary([survivor]), 30, "the replica to take over")
        await survivor.wait_nodes(1, timeout=30)
    finally:
        for m in managers:
            await m.stop()


def assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("shoal: etcd: cannot connect to 127.0.0.1:"), err
    for needle in needles:
        assert needle in lines[0], err


async def test_list_without_certificate_is_refused(etcd: Etcd, joined: Joiner) -> None:
    before = rejections(etcd)
    code, out, err = await shoal_list(etcd.url(PREFIX), [], "3s")
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "does the store require TLS?", "kv.certfile")
    assert rejections(etcd) > before, etcd.log()


async def test_list_with_another_cas_certificate_is_refused(
    etcd: Etcd, pki: PKI, joined: Joiner
) -> None:
    before = rejections(etcd)
    code, out, err = await shoal_list(etcd.url(PREFIX), pki.opts(pki.other), "3s")
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "the store refused the client certificate")
    assert "failed to verify client certificate" in etcd.log()
    assert rejections(etcd) > before


async def test_join_and_manage_without_certificate_report_the_error(
    etcd: Etcd, sandbox1: Sandbox
) -> None:
    url = etcd.url("refused")
    joiner = Joiner(sandbox1.nodes[0].addr, url, [])
    port = free_port()
    mgr = Manager(["manage", "-H", f"tcp://127.0.0.1:{port}", "--heartbeat", HEARTBEAT, url],
                  port)
    await joiner.start()
    try:
        await mgr.start()

        async def reported() -> bool:
            status = dict((await mgr.info())["SystemStatus"])
            return "does the store require TLS?" in status.get("Discovery Error", "")

        await wait_until(reported, 20, "the refusal as the manager's discovery error")

        async def logged() -> bool:
            return "does the store require TLS?" in joiner.log()

        await wait_until(logged, 20, "the refusal in shoal join's log")
        assert joiner.proc is not None and joiner.proc.returncode is None  # keeps beating
        for log in (joiner.log(), mgr.log()):
            assert "Traceback" not in log, log
        errors = [line for line in joiner.log().splitlines() if "msg=\"etcd:" in line]
        assert errors and all(line.startswith("time=") and "level=error" in line
                              for line in errors), joiner.log()
    finally:
        await mgr.stop()
        await joiner.kill()


async def test_unreadable_certificate_is_a_startup_error(pki: PKI) -> None:
    missing = os.path.join(os.path.dirname(pki.store.ca), "nope.pem")
    opts = [
        "--discovery-opt", f"kv.cacertfile={pki.store.ca}",
        "--discovery-opt", f"kv.certfile={missing}",
        "--discovery-opt", f"kv.keyfile={pki.store.client_key}",
    ]
    code, _, err = await shoal_list(f"etcd://127.0.0.1:{free_port()}/x", opts, "2s")
    assert code == 1
    assert err.strip() == f"shoal: etcd: kv.certfile: No such file or directory: {missing}"
