"""Real key-value stores for integration tests: etcd and ZooKeeper on 127.0.0.1, plus a
TCP proxy that can cut one client off from a store (the partition test).

Each store runs from Debian's packages in its own temporary data directory, on free
ports, and is stopped by PID. etcd can serve its clients over TLS and require a client
certificate signed by the test's CA (``Etcd(tls=...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time

from tests.certs import CertPaths
from tests.integration.manager import free_port

ETCD = "/usr/bin/etcd"
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
JAVA = shutil.which("java") or "/usr/bin/java"


async def _wait_port(port: int, timeout: float, proc: asyncio.subprocess.Process, log: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"store exited early:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"store did not listen on {port}:\n{_tail(log)}")


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-3000:]
    except OSError:
        return ""


class Store:
    """A store process; ``start()`` (again after ``stop()``) keeps port and data."""

    scheme = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"shoal-{self.scheme}-")
        self.log_path = os.path.join(self.dir, "store.log")
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, prefix: str, addr: str | None = None) -> str:
        return f"{self.scheme}://{addr or self.addr}/{prefix}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    async def start(self, timeout: float = 30) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )
        finally:
            os.close(log)
        await _wait_port(self.port, timeout, self.proc, self.log_path)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return _tail(self.log_path)


class Etcd(Store):
    """Debian's etcd-server (v3 API), one member.

    With ``tls``, clients must speak TLS and show a certificate signed by ``tls.ca``
    (``--client-cert-auth``); the server presents ``tls.cert``.
    """

    scheme = "etcd"

    def __init__(self, tls: CertPaths | None = None) -> None:
        super().__init__()
        self.peer_port = free_port()
        self.tls = tls

    def argv(self) -> list[str]:
        scheme = "https" if self.tls is not None else "http"
        client = f"{scheme}://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        secure: list[str] = []
        if self.tls is not None:
            secure = [
                "--cert-file", self.tls.cert,
                "--key-file", self.tls.key,
                "--trusted-ca-file", self.tls.ca,
                "--client-cert-auth",
            ]
        return [
            ETCD,
            "--name", "shoal-test",
            "--data-dir", os.path.join(self.dir, "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"shoal-test={peer}",
            "--heartbeat-interval", "50",
            "--election-timeout", "250",
            *secure,
        ]


class ZooKeeper(Store):
    """Debian's zookeeper, standalone; tickTime 250 ms so session timeouts from 0.5 s work."""

    scheme = "zk"

    def argv(self) -> list[str]:
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(
                "tickTime=250\n"
                f"dataDir={os.path.join(self.dir, 'data')}\n"
                f"clientPort={self.port}\n"
                "clientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n"
                "maxClientCnxns=0\n"
                "minSessionTimeout=500\n"
                "maxSessionTimeout=60000\n"
            )
        return [
            JAVA, "-Xmx256m", "-cp", ZK_CLASSPATH,
            "org.apache.zookeeper.server.ZooKeeperServerMain", cfg,
        ]


class CutProxy:
    """Forwards 127.0.0.1:<port> to a store; ``cut()`` silently drops traffic both ways
    (connections stay open, nothing arrives: a partition), ``heal()`` resumes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut_off = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        """Resume; connections that lived through the cut are reset (their streams lost
        bytes), so clients reconnect cleanly."""
        self.cut_off = False
        for writer in list(self._writers):
            writer.transport.abort()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.cut_off:  # a new connection during the cut goes nowhere until heal()
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass
            self._writers.discard(writer)
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.cut_off:
                    continue  # dropped on the floor
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
