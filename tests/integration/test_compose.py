"""Issue 4: Debian's docker-compose 1.29 (docker-py) against shoal.

Where a project lands: Compose makes its networks and volumes first. They are local
(a bridge network, a `local` volume), so each is created on ONE node: the first on
the scheduler's choice, the others next to it (shoal keeps a Compose project's local
resources together). Every container then follows its network and volume with a soft
`node==~<node>` constraint, exactly as classic Swarm's containers followed a local
network, so ALL services of such a project run on one node. Only with multi-host
(overlay) networks would the strategy spread them; the sandbox engines are not in
swarm mode and cannot make overlay networks.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import tempfile

import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import run_docker
from tests.integration.manager import Manager

pytestmark = pytest.mark.asyncio(loop_scope="session")

COMPOSE = "/usr/bin/docker-compose"
PROJECT = "shoalcp"
COMPOSE_FILE = """\
version: "3.7"
services:
  web:
    image: busybox
    command: sh -c "echo web says hello; echo $$HOSTNAME > /data/who; sleep 300"
    volumes:
      - data:/data
    networks:
      - back
  worker:
    image: busybox
    command: sh -c "echo worker ready; sleep 300"
    networks:
      - back
networks:
  back:
    labels:
      purpose: test
volumes:
  data: {}
"""


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


async def compose(manager: Manager, workdir: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_HOST"] = manager.tcp
    proc = await asyncio.create_subprocess_exec(
        COMPOSE, "--no-ansi", "-p", PROJECT, *args, cwd=workdir, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"docker-compose {' '.join(args)}:\n{text}"
    return text


async def on_engine(sandbox: Sandbox, *args: str) -> dict[str, list[str]]:
    """Per node, what its own engine lists (names), for the project's label."""
    out: dict[str, list[str]] = {}
    for node in sandbox.nodes:
        result = await run_docker(node.docker_host, *args, "--filter",
                                  f"label=com.docker.compose.project={PROJECT}",
                                  "--format", "{{.Name}}" if args[0] != "ps" else "{{.Names}}")
        assert result.returncode == 0, result.stderr
        out[node.name] = sorted(result.stdout.split())
    return out


async def test_compose_project_lifecycle(manager: Manager, sandbox3: Sandbox) -> None:
    with tempfile.TemporaryDirectory(prefix="shoal-compose-") as workdir:
        await asyncio.to_thread(
            write_file, os.path.join(workdir, "docker-compose.yml"), COMPOSE_FILE
        )
        await run_project(manager, sandbox3, workdir)


async def run_project(manager: Manager, sandbox3: Sandbox, workdir: str) -> None:

    up = await compose(manager, workdir, "up", "-d")
    assert f'Creating network "{PROJECT}_back"' in up
    assert f'Creating volume "{PROJECT}_data"' in up

    # The network and the volume: on one node, the same one, on that engine itself.
    networks = await on_engine(sandbox3, "network", "ls")
    volumes = await on_engine(sandbox3, "volume", "ls")
    net_nodes = [n for n, names in networks.items() if names]
    assert len(net_nodes) == 1
    home = net_nodes[0]
    assert networks[home] == [f"{PROJECT}_back"]
    assert {n for n, names in volumes.items() if names} == {home}
    assert volumes[home] == [f"{PROJECT}_data"]

    await compose(manager, workdir, "up", "-d", "--scale", "worker=4")
    ps = await compose(manager, workdir, "ps")
    for name in ("web_1", "worker_1", "worker_2", "worker_3", "worker_4"):
        line = next(x for x in ps.splitlines() if x.startswith(f"{PROJECT}_{name} "))
        assert " Up " in f"{line} "
    # All of them where their network and volume are (see the module docstring).
    containers = await on_engine(sandbox3, "ps", "-a")
    placed = collections.Counter({n: len(c) for n, c in containers.items() if c})
    assert placed == {home: 5}
    # Through shoal the names carry the node; Compose reads them as the bare name.
    listed = await run_docker(manager.tcp, "ps", "--format", "{{.Names}}")
    assert f"{home}/{PROJECT}_worker_4" in listed.stdout.split()

    await compose(manager, workdir, "scale", "worker=2")
    containers = await on_engine(sandbox3, "ps", "-a")
    assert containers[home] == sorted(
        f"{PROJECT}_{n}" for n in ("web_1", "worker_1", "worker_2")
    )

    logs = await compose(manager, workdir, "logs", "--no-color", "web")
    assert "web says hello" in logs
    who = await compose(manager, workdir, "exec", "-T", "web", "cat", "/data/who")
    assert who.strip()
    net = await compose(manager, workdir, "exec", "-T", "worker", "ping", "-c", "1", "web")
    assert "1 packets received" in net

    down = await compose(manager, workdir, "down", "-v")
    assert f"Removing network {PROJECT}_back" in down
    assert f"Removing volume {PROJECT}_data" in down
    # Nothing left behind on any node, asked of each engine directly.
    for kind in ("ps -a", "network ls", "volume ls"):
        left = await on_engine(sandbox3, *kind.split())
        assert all(not names for names in left.values()), (kind, left)
    assert "No such" not in down
