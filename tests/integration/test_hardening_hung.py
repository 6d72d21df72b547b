"""Issue 12, item 5: a hung engine is not a healthy engine.

A node's dockerd is frozen with SIGSTOP: it still accepts connections (the kernel does
that) but answers nothing, so only a timeout can tell. The health probe flags it within a
refresh interval plus the probe timeout, creates go elsewhere, cached reads keep
answering, and SIGCONT brings it back.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox, procs
from shoal.sandbox.node import SandboxNode
from tests.integration.conftest import remove_all_containers, run_docker
from tests.integration.manager import Manager, running_manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFRESH_MAX = 2.0  # running_manager's --engine-refresh-max-interval
PROBE_TIMEOUT = 2.0
#: Flagged within one refresh interval plus the probe timeout; the slack covers polling
#: and a loaded test machine, and is far below the old 3 x (interval + 30 s).
FLAG_BOUND = REFRESH_MAX + PROBE_TIMEOUT + 3.0
ANSWER_BOUND = 10.0  # a read through the manager answers, whatever the frozen node does
UNHEALTHY_TEXT = "running on unhealthy node"


@pytest_asyncio.fixture(loop_scope="session")
async def manager(sandbox3: Sandbox) -> AsyncIterator[Manager]:
    await remove_all_containers(sandbox3)
    try:
        async with running_manager(sandbox3.discovery, "--engine-probe-timeout",
                                   f"{PROBE_TIMEOUT:g}s", nodes=3) as mgr:
            yield mgr
    finally:
        await remove_all_containers(sandbox3)


def dockerd_pid(node: SandboxNode) -> int:
    """The node's dockerd: the child of its pid-namespace init (tini) named `dockerd`."""
    assert node.init_pid is not None
    for pid in procs.children(node.init_pid):
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "dockerd":
                return pid
    raise AssertionError(f"no dockerd under {node.name}'s init {node.init_pid}")


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP for the block; SIGCONT always, whatever the block raised."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def answered(host: str, *args: str) -> tuple[int, str]:
    """(exit code, output) of a docker command that must answer within ANSWER_BOUND."""
    start = time.monotonic()
    out = await run_docker(host, *args, timeout=ANSWER_BOUND + 5)
    assert time.monotonic() - start < ANSWER_BOUND, f"docker {' '.join(args)} was slow"
    return out.returncode, out.stdout + out.stderr


async def status_of(mgr: Manager, name: str) -> str:
    return (await mgr.node_status()).get(name, {}).get("Status", "")


async def test_a_frozen_engine_is_flagged_avoided_and_comes_back(
    manager: Manager, sandbox3: Sandbox
) -> None:
    host = manager.tcp
    victim_node = sandbox3.nodes[1]
    others = {n.name for n in sandbox3.nodes} - {victim_node.name}
    code, out = await answered(host, "run", "-d", "--name", "hung-victim",
                               "-e", f"constraint:node=={victim_node.name}",
                               "busybox", "sleep", "300")
    assert code == 0, out
    pid = dockerd_pid(victim_node)

    with frozen(pid):
        started = time.monotonic()
        # The cache answers for the frozen node's container, before and after the flag.
        code, out = await answered(host, "inspect", "--format", "{{.Node.Name}}",
                                   "hung-victim")
        assert (code, out.strip()) == (0, victim_node.name) or UNHEALTHY_TEXT in out, out

        async def flagged() -> bool:
            return await status_of(manager, victim_node.name) == "Unhealthy"

        await wait_until(flagged, FLAG_BOUND + 10, "the frozen node to be Unhealthy", 0.2)
        took = time.monotonic() - started
        assert took <= FLAG_BOUND, f"flagged after {took:.1f}s"

        placed: list[str] = []
        for i in range(6):
            code, out = await answered(host, "create", "--name", f"hung-new{i}", "busybox")
            assert code == 0, out
            code, out = await answered(host, "inspect", "--format", "{{.Node.Name}}",
                                       f"hung-new{i}")
            assert code == 0, out
            placed.append(out.strip())
        assert set(placed) <= others and len(set(placed)) == 2, placed

        code, out = await answered(host, "ps", "-a", "--format", "{{.Names}}\t{{.Status}}")
        assert code == 0, out
        assert f"{victim_node.name}/hung-victim\tHost Down" in out.splitlines(), out
        code, out = await answered(host, "inspect", "hung-victim")
        assert code != 0 and UNHEALTHY_TEXT in out, out
        assert await status_of(manager, victim_node.name) == "Unhealthy"

    async def healthy() -> bool:
        return await status_of(manager, victim_node.name) == "Healthy"

    await wait_until(healthy, 60, "the thawed node to be Healthy again", 0.2)
    code, out = await answered(host, "inspect", "--format", "{{.State.Running}}",
                               "hung-victim")
    assert (code, out.strip()) == (0, "true"), out
    code, out = await answered(host, "ps", "--format", "{{.Names}}")
    assert f"{victim_node.name}/hung-victim" in out.split(), out
    # Placement uses the node again: a constraint that only it meets is honoured.
    code, out = await answered(host, "create", "--name", "hung-after",
                               "-e", f"constraint:node=={victim_node.name}", "busybox")
    assert code == 0, out

