"""Integration fixtures: sandbox clusters of real dockerd nodes and a docker CLI runner.

Nothing here skips: a machine that cannot run the sandbox (not root, no dockerd) fails loudly.
Async tests using these fixtures should run on the session loop:
`pytestmark = pytest.mark.asyncio(loop_scope="session")`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

import docker
import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from shoal.sandbox.cluster import check_host
from tests.integration.dockerpy import client_of
from tests.integration.manager import Manager, running_manager

DOCKER_NEW = "/usr/local/bin/docker"  # docker CLI v28
DOCKER_OLD = "/usr/bin/docker"  # Debian's docker CLI 20.10, same version as the engines
DOCKER_CLIS = [p for p in (DOCKER_NEW, DOCKER_OLD) if os.path.exists(p)]

# Labels of the shared 3-node cluster; constraint/affinity tests rely on them.
SANDBOX3_LABELS = [
    {"storage": "ssd", "zone": "a"},
    {"storage": "disk", "zone": "a"},
    {"zone": "b"},
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.integration)


def sandbox_tag(name: str, prefix: str = "m", width: int = 7) -> str:
    """A short tag unique per test module and pytest process: modules, and concurrent runs of
    the same module, never share bridges or namespaces."""
    return f"{prefix}{zlib.crc32(f'{name}:{os.getpid()}'.encode()):08x}"[: 1 + width]


async def run_docker(
    host: str,
    *args: str,
    timeout: float = 60,
    cli: str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against HOST (e.g. tcp://127.0.0.1:PORT); never raises on failure."""
    binary = cli or (DOCKER_CLIS[0] if DOCKER_CLIS else "docker")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
    env["DOCKER_HOST"] = host
    proc = await asyncio.create_subprocess_exec(
        binary, *args, env=env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return subprocess.CompletedProcess([binary, *args], proc.returncode or 0,
                                       out.decode(errors="replace"), err.decode(errors="replace"))


async def docker_ok(host: str, *args: str, timeout: float = 60) -> str:
    """`docker ARGS` with the newest CLI, which must succeed: its stdout."""
    result = await run_docker(host, *args, cli=DOCKER_NEW, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def api(manager: Manager) -> Iterator[docker.APIClient]:
    """docker-py's client of the module's `manager`."""
    with client_of(manager.tcp) as client:
        yield client


async def remove_all_containers(sandbox: Sandbox) -> None:
    """Remove every container on every node, straight on the engines (between tests)."""
    for node in sandbox.nodes:
        ids = (await run_docker(node.docker_host, "ps", "-aq")).stdout.split()
        if ids:
            await run_docker(node.docker_host, "rm", "-f", *ids)


class DockerCli(Protocol):
    def __call__(self, host: str, *args: str, timeout: float = 60, cli: str | None = None,
                 input: str | None = None) -> Awaitable[subprocess.CompletedProcess[str]]: ...


@pytest.fixture(scope="session")
def docker_cli() -> DockerCli:
    """`await docker_cli(host, "ps", "-a", cli=DOCKER_OLD)`: the real CLI, DOCKER_HOST=host."""
    return run_docker


@pytest.fixture(scope="module")
def module_tag(request: pytest.FixtureRequest) -> str:
    """Tag for a module's own Sandbox(...) (prefix "u"; sandbox3 uses "m", make_sandbox "f")."""
    return sandbox_tag(request.module.__name__, "u")


@pytest.fixture(scope="session")
def docker_clis() -> list[str]:
    """The docker CLIs present (v28 first, then 20.10)."""
    return list(DOCKER_CLIS)


@pytest.fixture(scope="session")
def host_ready() -> None:
    """Checked once: root and the engine binaries; raises (not skips) if missing."""
    check_host(registry=True)
    if not DOCKER_CLIS:
        raise RuntimeError(f"no docker CLI at {DOCKER_NEW} or {DOCKER_OLD}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox3(request: pytest.FixtureRequest, host_ready: None) -> AsyncIterator[Sandbox]:
    """Three nodes shared by a module; labels as in SANDBOX3_LABELS."""
    sandbox = Sandbox(3, tag=sandbox_tag(request.module.__name__),
                      labels=[dict(x) for x in SANDBOX3_LABELS])
    async with sandbox:
        yield sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def manager3(sandbox3: Sandbox) -> AsyncIterator[Manager]:
    """`shoal manage` over `sandbox3` (TCP and unix listeners), shared by a module."""
    async with running_manager(sandbox3.discovery, "--engine-failure-retry", "2", nodes=3,
                               unix=True) as mgr:
        yield mgr


MakeSandbox = Callable[..., Awaitable[Sandbox]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_sandbox(request: pytest.FixtureRequest,
                       host_ready: None) -> AsyncIterator[MakeSandbox]:
    """`sb = await make_sandbox(2, labels=[{...}, {...}])`; torn down when the test ends."""
    made: list[Sandbox] = []
    base = sandbox_tag(f"{request.module.__name__}::{request.node.name}", "f", 5)

    async def make(n: int, *, labels: list[dict[str, str]] | None = None,
                   registry: bool = True) -> Sandbox:
        sandbox = Sandbox(n, tag=f"{base}{len(made)}", labels=labels, registry=registry)
        made.append(sandbox)
        await sandbox.up()
        return sandbox

    try:
        yield make
    finally:
        for sandbox in reversed(made):
            await sandbox.down()
