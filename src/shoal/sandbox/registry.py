"""The sandbox's local image registry: Debian's docker-registry on the bridge address."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field

from shoal.sandbox import procs
from shoal.sandbox.images import IMAGE, docker
from shoal.sandbox.netns import wait_tcp

REGISTRY_BIN = "/usr/bin/docker-registry"
PORT = 5000

CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {ip}:{port}
"""


@dataclass
class Registry:
    """One registry process; listens on the bridge IP only so only sandbox nodes reach it."""

    ip: str
    workdir: str
    port: int = PORT
    pid: int | None = None
    started: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    async def start(self) -> None:
        root = os.path.join(self.workdir, "registry")
        config = os.path.join(self.workdir, "registry.yml")
        await asyncio.to_thread(os.makedirs, root, exist_ok=True)
        await asyncio.to_thread(_write, config, CONFIG.format(root=root, ip=self.ip,
                                                              port=self.port))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self._proc = await procs.spawn([REGISTRY_BIN, "serve", config], env=env,
                                       log_path=os.path.join(self.workdir, "registry.log"))
        self.pid = self._proc.pid
        self.started = procs.start_time(self.pid)

    async def wait_ready(self, timeout: float = 30) -> None:
        if not await wait_tcp(self.ip, self.port, timeout):
            raise procs.SandboxError(f"registry on {self.address} not ready after {timeout}s")

    async def preload(self, host: str) -> None:
        """Push busybox from engine HOST as library/busybox, where mirror pulls look for it."""
        remote = f"{self.address}/library/{IMAGE}"
        await docker(host, "tag", IMAGE, remote)
        await docker(host, "push", remote, timeout=120)
        await docker(host, "rmi", remote)

    async def stop(self) -> None:
        if self.pid is not None:
            await procs.stop(self.pid, self.started, term_first=2, proc=self._proc)
        self.pid = None
        self._proc = None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
