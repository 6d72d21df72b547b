"""A real `shoal manage` process for integration tests: started, probed, stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Manager:
    """`python -m shoal ... manage ...` in a subprocess, with its log kept for failures."""

    def __init__(
        self,
        args: list[str],
        port: int,
        unix_socket: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.args = args
        self.port = port
        self.unix_socket = unix_socket
        self.ssl_context = ssl_context
        self.log_path = tempfile.mktemp(prefix="shoal-manage-", suffix=".log")
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context if self.ssl_context else False)
        )

    async def start(self, *, ready_timeout: float = 30.0) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shoal", *self.args, stdout=log, stderr=log
            )
        finally:
            os.close(log)
        await self.wait_ping(ready_timeout)

    async def wait_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with self.session() as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"shoal manage exited early:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.url + "/_ping") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"shoal manage did not answer /_ping:\n{self.log()}")

    async def info(self) -> dict[str, Any]:
        async with self.session() as session, session.get(self.url + "/info") as resp:
            return dict(await resp.json())

    async def node_status(self) -> dict[str, dict[str, str]]:
        """Classic Swarm's per-node lines of `/info`, as {node: {field: value}}."""
        status = (await self.info()).get("SystemStatus") or []
        nodes: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for key, value in status:
            if key.startswith("  └ "):
                if current is not None:
                    current[key[4:]] = value
            elif key.startswith(" ") and not key.startswith("  "):
                current = nodes.setdefault(key.strip(), {"Addr": value})
        return nodes

    async def wait_nodes(self, count: int, status: str = "Healthy", timeout: float = 60) -> None:
        async def ready() -> bool:
            nodes = await self.node_status()
            return sum(1 for n in nodes.values() if n.get("Status") == status) >= count

        await wait_until(ready, timeout, f"{count} {status} nodes")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.3
) -> None:
    """Poll `check` until it holds; bounded, and says what it waited for when it gives up."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except (aiohttp.ClientError, OSError, json.JSONDecodeError) as exc:
            last_error = exc
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({last_error})")


FAST_REFRESH = ("--engine-refresh-min-interval", "1s", "--engine-refresh-max-interval", "2s")


@contextlib.asynccontextmanager
async def running_manager(
    discovery: str, *extra: str, nodes: int, unix: bool = False
) -> AsyncIterator[Manager]:
    """`shoal manage` over `discovery` with a fast refresh, once `nodes` engines are healthy.

    With `unix`, a second listener on a unix socket (`Manager.unix_socket`).
    """
    port = free_port()
    hosts = ["-H", f"tcp://127.0.0.1:{port}"]
    sock = None
    if unix:
        sock = os.path.join(tempfile.mkdtemp(prefix="shoal-"), "x.sock")
        hosts += ["-H", f"unix://{sock}"]
    mgr = Manager(["manage", *hosts, *FAST_REFRESH, *extra, discovery], port, unix_socket=sock)
    await mgr.start()
    try:
        await mgr.wait_nodes(nodes)
        yield mgr
    finally:
        await mgr.stop()
