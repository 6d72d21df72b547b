"""Issue 12, item 2: a container name is unique in the whole cluster, whoever sets it.

Each engine only refuses names it holds itself, so renames (and creates) of containers on
different nodes used to all win one name. Here clients race with the real docker CLI and
the engines themselves are asked, afterwards, who holds the name.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import remove_all_containers, run_docker
from tests.integration.manager import Manager

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFLICT = 'Conflict. The container name "/{name}" is already in use by container "{cid}". ' \
    "You have to remove (or rename) that container to be able to reuse that name."


@pytest_asyncio.fixture(loop_scope="session")
async def clean(sandbox3: Sandbox) -> AsyncIterator[Sandbox]:
    await remove_all_containers(sandbox3)
    try:
        yield sandbox3
    finally:
        await remove_all_containers(sandbox3)


async def ok(host: str, *args: str) -> str:
    out = await run_docker(host, *args)
    assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


async def create_spread(host: str, names: list[str]) -> dict[str, str]:
    """Create the containers one by one (spread puts them on every node): name -> node."""
    nodes: dict[str, str] = {}
    for name in names:
        await ok(host, "create", "--name", name, "busybox", "sleep", "300")
        nodes[name] = await ok(host, "inspect", "--format", "{{.Node.Name}}", name)
    return nodes


async def holders(sandbox: Sandbox, name: str) -> list[tuple[str, str]]:
    """(node, full ID) of every container named NAME, asked of each engine directly."""
    found: list[tuple[str, str]] = []
    for node in sandbox.nodes:
        out = await ok(node.docker_host, "ps", "-a", "--no-trunc",
                       "--filter", f"name=^/{name}$", "--format", "{{.ID}}")
        found += [(node.name, cid) for cid in out.split()]
    return found


def winners(results: list[subprocess.CompletedProcess[str]]) -> list[int]:
    return [i for i, r in enumerate(results) if r.returncode == 0]


async def test_sixteen_renames_racing_for_one_name_have_one_winner(
    manager3: Manager, clean: Sandbox
) -> None:
    host = manager3.tcp
    sources = [f"src{i}" for i in range(16)]
    nodes = await create_spread(host, sources)
    assert len(set(nodes.values())) == 3  # the racers sit on every node
    for round_ in range(2):
        name = f"dup{round_}"
        results = await asyncio.gather(
            *(run_docker(host, "rename", src, name, timeout=60) for src in sources)
        )
        won = winners(results)
        assert len(won) == 1, [r.stderr for r in results]
        winner = sources[won[0]]
        cid = await ok(host, "inspect", "--format", "{{.Id}}", name)
        assert await holders(clean, name) == [(nodes[winner], cid)]
        for i, result in enumerate(results):
            if i != won[0]:
                assert CONFLICT.format(name=name, cid=cid) in result.stderr, result.stderr
        # The winner gives the name back for the next round; the losers kept theirs.
        await ok(host, "rename", name, winner)
        listed = (await ok(host, "ps", "-a", "--format", "{{.Names}}")).split()
        assert sorted(n.split("/", 1)[1] for n in listed) == sorted(sources)


async def test_creates_racing_renames_leave_one_container_with_the_name(
    manager3: Manager, clean: Sandbox
) -> None:
    host = manager3.tcp
    sources = [f"ren{i}" for i in range(8)]
    await create_spread(host, sources)
    for round_ in range(2):
        name = f"both{round_}"
        renames = [run_docker(host, "rename", src, name, timeout=60) for src in sources]
        creates = [run_docker(host, "create", "--name", name, "busybox", "true", timeout=60)
                   for _ in range(8)]
        racers = [x for pair in zip(renames, creates, strict=True) for x in pair]
        results = await asyncio.gather(*racers)
        won = winners(results)
        assert len(won) == 1, [r.stderr for r in results]
        cid = await ok(host, "inspect", "--format", "{{.Id}}", name)
        [(_, held_by)] = await holders(clean, name)
        assert held_by == cid
        for i, result in enumerate(results):
            if i != won[0]:
                assert "is already in use by container" in result.stderr, result.stderr
                assert f'"/{name}"' in result.stderr
        if won[0] % 2 == 0:  # a rename won: its source gets its own name back
            await ok(host, "rename", name, sources[won[0] // 2])
        else:
            await ok(host, "rm", name)
        assert await holders(clean, name) == []
