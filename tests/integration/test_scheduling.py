"""Issue 3 acceptance: placement by the real scheduler, through the real docker CLI."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DockerCli, run_docker
from tests.integration.manager import Manager, running_manager

pytestmark = pytest.mark.asyncio(loop_scope="session")

@pytest.fixture(scope="module")
def spread(manager3: Manager) -> Manager:
    return manager3


@pytest_asyncio.fixture(loop_scope="session")
async def clean(sandbox3: Sandbox) -> AsyncIterator[None]:
    """Each test starts and ends with no container on any node."""

    async def wipe() -> None:
        for node in sandbox3.nodes:
            ids = (await run_docker(node.docker_host, "ps", "-aq")).stdout.split()
            if ids:
                await run_docker(node.docker_host, "rm", "-f", *ids)

    await wipe()
    yield
    await wipe()


async def node_of(docker_cli: DockerCli, host: str, name: str) -> str:
    out = await docker_cli(host, "inspect", "-f", "{{.Node.Name}}", name)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def run_d(docker_cli: DockerCli, host: str, *args: str) -> str:
    out = await docker_cli(host, "run", "-d", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_node_constraint(spread: Manager, clean: None, docker_cli: DockerCli) -> None:
    for i in range(3):
        await run_d(docker_cli, spread.tcp, "--name", f"on1-{i}", "-e", "constraint:node==node-1",
                    "busybox", "sleep", "300")
        assert await node_of(docker_cli, spread.tcp, f"on1-{i}") == "node-1"
    # The rule is kept as a label, as classic Swarm does, and left the environment.
    labels = await docker_cli(spread.tcp, "inspect", "-f",
                              '{{index .Config.Labels "com.docker.swarm.constraints"}}', "on1-0")
    assert labels.stdout.strip() == '["node==node-1"]'
    env = await docker_cli(spread.tcp, "inspect", "-f", "{{.Config.Env}}", "on1-0")
    assert "constraint:" not in env.stdout


async def test_engine_label_constraints(spread: Manager, clean: None, docker_cli: DockerCli
                                        ) -> None:
    await run_d(docker_cli, spread.tcp, "--name", "ssd", "-e", "constraint:storage==ssd",
                "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "ssd") == "node-0"
    await run_d(docker_cli, spread.tcp, "--name", "zb", "--label",
                'com.docker.swarm.constraints=["zone==b"]', "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "zb") == "node-2"
    await run_d(docker_cli, spread.tcp, "--name", "notssd", "-e", "constraint:storage!=ssd",
                "-e", "constraint:zone==a", "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "notssd") == "node-1"
    await run_d(docker_cli, spread.tcp, "--name", "glob", "-e", "constraint:storage==d*",
                "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "glob") == "node-1"
    await run_d(docker_cli, spread.tcp, "--name", "regex", "-e", "constraint:node==/node-[2]/",
                "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "regex") == "node-2"


async def test_unsatisfiable_constraint_creates_nothing(
    spread: Manager, sandbox3: Sandbox, clean: None, docker_cli: DockerCli
) -> None:
    out = await docker_cli(spread.tcp, "run", "-d", "--name", "never", "-e",
                           "constraint:node==node-9", "busybox", "true")
    assert out.returncode != 0
    assert "Unable to find a node that satisfies the following conditions" in out.stderr
    assert "[node==node-9]" in out.stderr
    for node in sandbox3.nodes:
        listed = await run_docker(node.docker_host, "ps", "-aq")
        assert listed.stdout.strip() == "", node.name


async def test_affinity_to_container_and_image(
    spread: Manager, sandbox3: Sandbox, clean: None, docker_cli: DockerCli
) -> None:
    await run_d(docker_cli, spread.tcp, "--name", "anchor", "busybox", "sleep", "300")
    anchor = await node_of(docker_cli, spread.tcp, "anchor")
    for i in range(2):
        await run_d(docker_cli, spread.tcp, "--name", f"friend{i}", "-e",
                    "affinity:container==anchor", "busybox", "sleep", "300")
        assert await node_of(docker_cli, spread.tcp, f"friend{i}") == anchor
    await run_d(docker_cli, spread.tcp, "--name", "away", "-e", "affinity:container!=anchor",
                "busybox", "sleep", "300")
    assert await node_of(docker_cli, spread.tcp, "away") != anchor
    # Image affinity: an image only node-2 has.
    node2 = sandbox3.nodes[2]
    tagged = await run_docker(node2.docker_host, "tag", "busybox", "only-on-two:v1")
    assert tagged.returncode == 0, tagged.stderr

    async def image_seen() -> bool:
        images = await docker_cli(spread.tcp, "images", "--format", "{{.Repository}}")
        return "only-on-two" in images.stdout

    from tests.integration.manager import wait_until

    await wait_until(image_seen, 20, "the new tag in shoal's image cache")
    for i in range(2):
        await run_d(docker_cli, spread.tcp, "--name", f"img{i}", "-e",
                    "affinity:image==only-on-two:v1", "busybox", "sleep", "300")
        assert await node_of(docker_cli, spread.tcp, f"img{i}") == "node-2"
    await run_docker(node2.docker_host, "rmi", "only-on-two:v1")


async def test_dependencies_colocate(spread: Manager, clean: None, docker_cli: DockerCli) -> None:
    await run_d(docker_cli, spread.tcp, "--name", "data", "-v", "/data", "busybox", "sleep",
                "300")
    home = await node_of(docker_cli, spread.tcp, "data")
    await run_d(docker_cli, spread.tcp, "--name", "reader", "--volumes-from", "data", "busybox",
                "sleep", "300")
    await run_d(docker_cli, spread.tcp, "--name", "linked", "--link", "data:db", "busybox",
                "sleep", "300")
    await run_d(docker_cli, spread.tcp, "--name", "netshare", "--net", "container:data",
                "busybox", "sleep", "300")
    for name in ("reader", "linked", "netshare"):
        assert await node_of(docker_cli, spread.tcp, name) == home, name


async def test_spread_balances(spread: Manager, clean: None, docker_cli: DockerCli) -> None:
    for i in range(9):
        await run_d(docker_cli, spread.tcp, "--name", f"bal{i}", "busybox", "sleep", "300")
    counts = collections.Counter(
        [await node_of(docker_cli, spread.tcp, f"bal{i}") for i in range(9)]
    )
    assert counts == {"node-0": 3, "node-1": 3, "node-2": 3}


async def test_host_ports_on_two_nodes(
    sandbox3: Sandbox, clean: None, docker_cli: DockerCli
) -> None:
    two = "nodes://" + ",".join(n.addr for n in sandbox3.nodes[:2])
    async with running_manager(two, nodes=2) as mgr:
        for i in range(2):
            await run_d(docker_cli, mgr.tcp, "--name", f"web{i}", "-p", "80:80", "busybox",
                        "httpd", "-f", "-p", "80")
        nodes = {await node_of(docker_cli, mgr.tcp, f"web{i}") for i in range(2)}
        assert nodes == {"node-0", "node-1"}
        third = await docker_cli(mgr.tcp, "run", "-d", "--name", "web2", "-p", "80:80",
                                 "busybox", "httpd", "-f", "-p", "80")
        assert third.returncode != 0
        assert "Unable to find a node that satisfies the following conditions" in third.stderr
        assert "port 80 (Bridge mode)" in third.stderr
        # A random host port never conflicts.
        await run_d(docker_cli, mgr.tcp, "--name", "web-any", "-p", "80", "busybox", "httpd",
                    "-f", "-p", "80")


async def test_binpack_fills_first_node(
    sandbox3: Sandbox, clean: None, docker_cli: DockerCli
) -> None:
    two = "nodes://" + ",".join(n.addr for n in sandbox3.nodes[:2])
    async with running_manager(two, "--strategy", "binpack", nodes=2) as mgr:
        info = await mgr.info()
        total = max(int(info["MemTotal"]) // 2, 1)
        # Two of these fit on one node, a third does not.
        size = total * 2 // 5
        placed = []
        for i in range(3):
            await run_d(docker_cli, mgr.tcp, "--name", f"bp{i}", "-m", str(size), "busybox",
                        "sleep", "300")
            placed.append(await node_of(docker_cli, mgr.tcp, f"bp{i}"))
        assert placed[0] == placed[1]
        assert placed[2] != placed[0]
        assert "Reserved Memory" in str(info["SystemStatus"])


async def test_containerslots(make_sandbox: object, docker_cli: DockerCli) -> None:
    sandbox = await make_sandbox(1, labels=[{"containerslots": "2"}])  # type: ignore[operator]
    async with running_manager(sandbox.discovery, nodes=1) as mgr:
        for i in range(2):
            await run_d(docker_cli, mgr.tcp, "--name", f"slot{i}", "busybox", "sleep", "300")
        over = await docker_cli(mgr.tcp, "run", "-d", "--name", "slot2", "busybox", "true")
        assert over.returncode != 0
        assert "available container slots" in over.stderr
