"""Issue 4: networks and volumes through shoal, checked against each node's own engine.

Local networks and `local` volumes live on ONE node and are named `node/name`;
containers that use them follow them there (a soft `node==~` constraint).
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, run_docker
from tests.integration.manager import Manager

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


async def ok(host: str, *args: str) -> str:
    result = await run_docker(host, *args, cli=DOCKER_NEW)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


async def fails(host: str, *args: str) -> str:
    result = await run_docker(host, *args, cli=DOCKER_NEW)
    assert result.returncode != 0, f"docker {' '.join(args)} should fail: {result.stdout}"
    return result.stderr


async def holders(sandbox: Sandbox, kind: str, name: str) -> list[str]:
    """The nodes whose own engine has network/volume NAME."""
    found = []
    for node in sandbox.nodes:
        names = (await ok(node.docker_host, kind, "ls", "--format", "{{.Name}}")).split()
        if name in names:
            found.append(node.name)
    return found


async def node_of(host: str, container: str) -> str:
    return (await ok(host, "inspect", "-f", "{{.Node.Name}}", container)).strip()


async def clean(sandbox: Sandbox) -> None:
    for node in sandbox.nodes:
        h = node.docker_host
        ids = (await run_docker(h, "ps", "-aq")).stdout.split()
        if ids:
            await run_docker(h, "rm", "-f", *ids)
        await run_docker(h, "network", "prune", "-f")
        await run_docker(h, "volume", "prune", "-f")


async def test_network_listing_and_inspect_match_the_engine(
    manager: Manager, sandbox3: Sandbox
) -> None:
    names = (await ok(manager.tcp, "network", "ls", "--format", "{{.Name}}")).split()
    assert sorted(names) == sorted(
        f"node-{i}/{n}" for i in range(3) for n in ("bridge", "host", "none")
    )
    builtin = await ok(manager.tcp, "network", "ls", "--filter", "type=builtin", "-q")
    assert len(builtin.split()) == 9
    only1 = await ok(manager.tcp, "network", "ls", "--filter", "node=node-1",
                     "--format", "{{.Name}}")
    assert sorted(only1.split()) == ["node-1/bridge", "node-1/host", "node-1/none"]

    # A container on node-0's bridge shows up in the Containers map, as on the engine.
    await ok(manager.tcp, "run", "-d", "--name", "insp", "-e", "constraint:node==node-0",
             "busybox", "sleep", "300")
    through = json.loads(await ok(manager.tcp, "network", "inspect", "node-0/bridge"))
    direct = json.loads(await ok(sandbox3.nodes[0].docker_host, "network", "inspect", "bridge"))
    assert through == direct
    assert [c["Name"] for c in through[0]["Containers"].values()] == ["insp"]
    # `bridge` alone exists on three nodes: ambiguous, so not found (spec 3.10).
    assert "network bridge not found" in await fails(manager.tcp, "network", "inspect", "bridge")
    await clean(sandbox3)


async def test_network_lifecycle(manager: Manager, sandbox3: Sandbox) -> None:
    host = manager.tcp
    # Without a node: one node, chosen by the scheduler.
    await ok(host, "network", "create", "--label", "team=a", "appnet")
    where = await holders(sandbox3, "network", "appnet")
    assert len(where) == 1
    home = where[0]
    assert f"{home}/appnet" in (await ok(host, "network", "ls", "--format", "{{.Name}}")).split()
    labelled = await ok(host, "network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}")
    assert labelled.split() == [f"{home}/appnet"]
    # Plain name, node/name and ID all resolve to it; the inspect shows the bare name.
    for ref in ("appnet", f"{home}/appnet"):
        assert (await ok(host, "network", "inspect", "-f", "{{.Name}}", ref)).strip() == "appnet"
    # The same name again is refused while it exists somewhere in the cluster.
    assert "already exists" in await fails(host, "network", "create", "appnet")

    # With node/name: exactly there.
    await ok(host, "network", "create", "node-2/pinned")
    assert await holders(sandbox3, "network", "pinned") == ["node-2"]
    assert "node==node-9" in await fails(host, "network", "create", "node-9/x")

    # Containers follow their local network, by plain or node-qualified name.
    await ok(host, "run", "-d", "--name", "onapp", "--net", "appnet", "busybox", "sleep", "300")
    await ok(host, "run", "-d", "--name", "onpin", "--net", "node-2/pinned",
             "busybox", "sleep", "300")
    assert await node_of(host, "onapp") == home
    assert await node_of(host, "onpin") == "node-2"
    mode = await ok(host, "inspect", "-f", "{{.HostConfig.NetworkMode}}", "onpin")
    assert mode.strip() == "pinned"

    # Connect and disconnect go to the container's engine; the cache follows at once.
    await ok(host, "run", "-d", "--name", "joiner", "-e", "constraint:node==node-2",
             "busybox", "sleep", "300")
    await ok(host, "network", "connect", "pinned", "joiner")
    members = await ok(host, "network", "inspect", "-f",
                       "{{range .Containers}}{{.Name}} {{end}}", "node-2/pinned")
    assert sorted(members.split()) == ["joiner", "onpin"]
    nets = await ok(host, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}"
                    "{{$k}} {{end}}", "joiner")
    assert sorted(nets.split()) == ["bridge", "pinned"]
    await ok(host, "network", "disconnect", "node-2/pinned", "joiner")
    members = await ok(host, "network", "inspect", "-f",
                       "{{range .Containers}}{{.Name}} {{end}}", "pinned")
    assert members.split() == ["onpin"]
    assert "No such container: ghost" in await fails(host, "network", "connect", "pinned", "ghost")
    if home != "node-2":
        err = await fails(host, "network", "connect", "appnet", "joiner")
        assert "not found on node node-2" in err

    # Removal: refused by the engine while in use, then gone from the one node.
    assert "active endpoints" in await fails(host, "network", "rm", "pinned")
    await ok(host, "rm", "-f", "onapp", "onpin", "joiner")
    await ok(host, "network", "rm", "pinned", f"{home}/appnet")
    assert await holders(sandbox3, "network", "pinned") == []
    assert await holders(sandbox3, "network", "appnet") == []
    assert "network pinned not found" in await fails(host, "network", "rm", "pinned")

    # Prune runs on every node and names what it removed by node.
    await ok(host, "network", "create", "node-0/p0")
    await ok(host, "network", "create", "node-1/p1")
    pruned = await ok(host, "network", "prune", "-f")
    assert "node-0/p0" in pruned and "node-1/p1" in pruned
    assert await holders(sandbox3, "network", "p0") == []
    await clean(sandbox3)


async def test_overlay_fails_with_the_engine_message(manager: Manager) -> None:
    err = await fails(manager.tcp, "network", "create", "-d", "overlay", "ov")
    assert "not a swarm manager" in err
    async with aiohttp.ClientSession() as session:
        async with session.post(manager.url + "/networks/create",
                                json={"Name": "ov", "Driver": "overlay"}) as resp:
            assert resp.status == 500  # dockerd 20.10 says 500 here; passed through as is
            assert "not a swarm manager" in (await resp.json())["message"]


async def test_volume_lifecycle(manager: Manager, sandbox3: Sandbox) -> None:
    host = manager.tcp
    # A local volume is made on ONE node (classic Swarm's #1529 made one per node).
    assert (await ok(host, "volume", "create", "--label", "k=v", "vol1")).strip() == "vol1"
    where = await holders(sandbox3, "volume", "vol1")
    assert len(where) == 1
    home = where[0]
    listed = await ok(host, "volume", "ls", "--format", "{{.Name}}")
    assert listed.split() == [f"{home}/vol1"]
    assert (await ok(host, "volume", "inspect", "-f", "{{.Name}}", "vol1")).strip() == "vol1"
    # Creating it again answers the existing one, as an engine does.
    await ok(host, "volume", "create", "vol1")
    assert await holders(sandbox3, "volume", "vol1") == [home]

    await ok(host, "volume", "create", "node-1/vol2")
    assert await holders(sandbox3, "volume", "vol2") == ["node-1"]
    assert "node==node-7" in await fails(host, "volume", "create", "node-7/v")

    # A container mounting a volume that exists on one node lands there.
    for i in range(3):
        await ok(host, "run", "-d", "--name", f"user{i}", "-v", "vol2:/data",
                 "busybox", "sleep", "300")
        assert await node_of(host, f"user{i}") == "node-1"
    await ok(host, "run", "-d", "--name", "mnt", "--mount", f"source={home}/vol1,target=/d",
             "busybox", "sleep", "300")
    assert await node_of(host, "mnt") == home

    dangling = await ok(host, "volume", "ls", "-q", "--filter", "dangling=true")
    assert dangling.split() == []
    node1 = await ok(host, "volume", "ls", "-q", "--filter", "node=node-1")
    assert node1.split() == ["node-1/vol2"]

    # The whitelist label still asks for one copy per allowed node (spec 3.11).
    await ok(host, "volume", "create", "--label",
             'com.docker.swarm.whitelists=["node==node-0|node-2"]', "wl")
    assert await holders(sandbox3, "volume", "wl") == ["node-0", "node-2"]
    await ok(host, "volume", "rm", "node-2/wl")
    assert await holders(sandbox3, "volume", "wl") == ["node-0"]

    assert "in use" in await fails(host, "volume", "rm", "vol2")
    await ok(host, "rm", "-f", "user0", "user1", "user2", "mnt")
    await ok(host, "volume", "rm", "vol2", f"{home}/vol1")
    assert await holders(sandbox3, "volume", "vol2") == []
    assert await holders(sandbox3, "volume", "vol1") == []
    pruned = await ok(host, "volume", "prune", "-f")
    assert "node-0/wl" in pruned
    assert (await ok(host, "volume", "ls", "-q")).split() == []
    await clean(sandbox3)


async def test_unknown_network_and_volume_answer_404(manager: Manager) -> None:
    async with aiohttp.ClientSession() as session:
        for method, path, message in [
            ("GET", "/networks/nope", "network nope not found"),
            ("DELETE", "/networks/nope", "network nope not found"),
            ("POST", "/networks/nope/connect", "network nope not found"),
            ("POST", "/networks/nope/disconnect", "network nope not found"),
            ("GET", "/volumes/nope", "get nope: no such volume"),
            ("DELETE", "/volumes/nope", "get nope: no such volume"),
        ]:
            async with session.request(method, manager.url + path, json={}) as resp:
                assert resp.status == 404, (method, path)
                assert (await resp.json())["message"] == message
        # Bad bodies are refused, and the manager keeps answering.
        for path in ("/networks/create", "/volumes/create"):
            async with session.post(manager.url + path, data=b"{not json",
                                    headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400
        async with session.post(manager.url + "/networks/create", json={}) as resp:
            assert resp.status == 400
        async with session.get(manager.url + "/networks",
                               params={"filters": '{"type":["odd"]}'}) as resp:
            assert resp.status == 400
        async with session.get(manager.url + "/_ping") as resp:
            assert resp.status == 200
