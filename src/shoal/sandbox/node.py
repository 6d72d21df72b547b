"""One sandbox node: a real dockerd in its own net/UTS/mount/pid namespaces, as a separate host."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

from shoal.sandbox import procs

DOCKERD = "/usr/sbin/dockerd"
DOCKER_INIT = "/usr/bin/docker-init"
CLOSED_PROXY = "http://127.0.0.1:9"
NODE_TCP_PORT = 2375


def listen_socket(port: int) -> socket.socket:
    """Loopback listener for socket activation; SO_REUSEADDR lets a restart take the same port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


async def ping(host: str, port: int, timeout: float = 2) -> bool:
    """True when an engine answers GET /_ping with OK."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4096), timeout)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0] \
        and data.endswith(b"OK")


@dataclass
class SandboxNode:
    """A node of the sandbox; `addr` is what shoal discovers, `docker_host` what a CLI uses."""

    index: int
    name: str
    ip: str
    host_port: int
    unix_socket: str
    labels: dict[str, str]
    netns: str = ""
    dir: str = ""
    bridge_ip: str = ""
    mirror: bool = True
    pid: int | None = None  # the unshare process (our child), outside the node's pid ns
    pid_started: int | None = None
    init_pid: int | None = None  # pid 1 of the node's pid ns: killing it kills the "host"
    init_started: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.host_port}"

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.host_port}"

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.init_pid is not None and procs.alive(self.init_pid, self.init_started)

    def dockerd_args(self) -> list[str]:
        args = [
            DOCKERD, "--config-file", f"{self.dir}/daemon.json",
            "-H", "fd://", "-H", f"unix://{self.unix_socket}",
            "-H", f"tcp://{self.ip}:{NODE_TCP_PORT}", "--tls=false",
            "--data-root", f"{self.dir}/data",
            # exec-root and pidfile sit on the node's private /run tmpfs: runtime state
            # (containerd, runc, netns mounts) vanishes with the host, as after a reboot.
            "--exec-root", "/run/docker", "--pidfile", "/run/docker.pid",
        ]
        if self.mirror:
            args += ["--registry-mirror", f"http://{self.bridge_ip}:5000",
                     "--insecure-registry", f"{self.bridge_ip}:5000"]
        for key, value in sorted(self.labels.items()):
            args += ["--label", f"{key}={value}"]
        return args

    def _script(self, fd: int) -> str:
        q = shlex.quote
        inner = 'export LISTEN_FDS=1 LISTEN_PID=$$; exec "$0" "$@"'
        move_fd = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-"
        return "\n".join([
            "set -e",
            f"hostname {q(self.name)}",
            "mount -t tmpfs -o mode=755 tmpfs /run",
            f"mount --bind {q(self.dir)}/hosts /etc/hosts",
            f"mount --bind {q(self.dir)}/resolv.conf /etc/resolv.conf",
            move_fd,
            # tini as pid 1 reaps orphans; the inner bash's $$ is the pid dockerd gets via
            # exec, which is what socket activation checks LISTEN_PID against.
            f"exec {DOCKER_INIT} -- /bin/bash -c {q(inner)} "
            + " ".join(q(a) for a in self.dockerd_args()),
        ])

    def _env(self) -> dict[str, str]:
        no_proxy = f"{self.bridge_ip},127.0.0.1,localhost"
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "HTTP_PROXY": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY, "NO_PROXY": no_proxy,
            "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY, "no_proxy": no_proxy,
        }

    def _write_files(self) -> None:
        os.makedirs(f"{self.dir}/data", exist_ok=True)
        files = {
            "daemon.json": json.dumps({"deprecated-key-path": f"{self.dir}/key.json"}),
            "hosts": f"127.0.0.1\tlocalhost\n{self.ip}\t{self.name}\n",
            # A nameserver that answers nothing: lookups fail fast and stay in the sandbox.
            "resolv.conf": f"nameserver {self.bridge_ip}\noptions timeout:1 attempts:1\n",
        }
        for name, text in files.items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)

    async def start(self, *, wait: bool = True, timeout: float = 60) -> None:
        """Boot the host: same data root, ID, addresses and loopback port as before."""
        if self.running:
            raise procs.SandboxError(f"{self.name} is already running")
        await asyncio.to_thread(self._write_files)
        sock = listen_socket(self.host_port)
        self.host_port = sock.getsockname()[1]
        try:
            args = ["/usr/bin/nsenter", f"--net=/run/netns/{self.netns}", "/usr/bin/unshare",
                    "--uts", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
                    "/bin/bash", "-c", self._script(sock.fileno())]
            self._proc = await procs.spawn(args, env=self._env(), pass_fds=[sock.fileno()],
                                           log_path=f"{self.dir}/dockerd.log")
        finally:
            sock.close()  # dockerd holds it now; our copy would keep a dead node's port open
        self.pid = self._proc.pid
        self.pid_started = procs.start_time(self.pid)
        await self._find_init()
        if wait:
            await self.wait_ready(timeout)

    async def _find_init(self) -> None:
        assert self.pid is not None
        for _ in range(200):
            kids = procs.children(self.pid)
            if kids:
                self.init_pid = kids[0]
                self.init_started = procs.start_time(kids[0])
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
            await asyncio.sleep(0.025)
        raise procs.SandboxError(f"{self.name}: node init did not start; {self.log_tail()}")

    async def wait_ready(self, timeout: float = 60) -> None:
        """Bounded poll of /_ping on the loopback address."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await ping("127.0.0.1", self.host_port):
                return
            if not self.running:
                raise procs.SandboxError(f"{self.name} exited during start: {self.log_tail()}")
            await asyncio.sleep(0.1)
        raise procs.SandboxError(f"{self.name} not ready after {timeout}s: {self.log_tail()}")

    async def kill(self) -> None:
        """Power off the host: SIGKILL the pid-ns init; the kernel kills everything inside."""
        if self.init_pid is not None:
            procs.send(self.init_pid, signal.SIGKILL, self.init_started)
        if self.pid is not None:
            if not await procs.wait_gone(self.pid, self.pid_started, 15, self._proc):
                await procs.stop(self.pid, self.pid_started, proc=self._proc)
        self._proc = None
        self.pid = self.pid_started = self.init_pid = self.init_started = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(f"{self.dir}/dockerd.log", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def to_state(self) -> dict[str, Any]:
        keys = ("index", "name", "ip", "host_port", "unix_socket", "labels", "netns", "dir",
                "bridge_ip", "mirror", "pid", "pid_started", "init_pid", "init_started")
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> SandboxNode:
        return cls(**data)
