"""The sandbox really gives separate hosts: names, IDs, labels, images, ports, power cycles."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox, cli, state
from shoal.sandbox.node import ping

DockerCli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]
MakeSandbox = Callable[..., Awaitable[Sandbox]]
CLIS = [p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if os.path.exists(p)]

pytestmark = pytest.mark.asyncio(loop_scope="session")

LABELS = [{"zone": "a", "storage": "ssd"}, {"zone": "b"}]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox2(host_ready: None, module_tag: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(2, tag=module_tag, labels=LABELS) as sandbox:
        yield sandbox


async def info(docker_cli: DockerCli, host: str) -> dict[str, Any]:
    res = await docker_cli(host, "info", "--format", "{{json .}}")
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


async def http_get(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_nodes_are_distinct_hosts(sandbox2: Sandbox, docker_cli: DockerCli) -> None:
    infos = [await info(docker_cli, n.docker_host) for n in sandbox2.nodes]
    assert [i["Name"] for i in infos] == ["node-0", "node-1"]
    assert len({i["ID"] for i in infos}) == 2
    assert sorted(infos[0]["Labels"]) == ["storage=ssd", "zone=a"]  # dockerd's order varies
    assert infos[1]["Labels"] == ["zone=b"]
    assert sandbox2.discovery == "nodes://" + ",".join(n.addr for n in sandbox2.nodes)
    assert all(n.addr.startswith("127.0.0.1:") for n in sandbox2.nodes)


async def test_unix_socket_and_node_address_reach_the_same_engine(
        sandbox2: Sandbox, docker_cli: DockerCli) -> None:
    node = sandbox2.nodes[1]
    via_unix = await info(docker_cli, f"unix://{node.unix_socket}")
    assert via_unix["Name"] == "node-1"
    # The in-namespace address (tcp://IP:2375) is how nodes reach each other.
    assert await ping(node.ip, 2375)


@pytest.mark.parametrize("cli_path", CLIS)
async def test_run_busybox_on_each_node(sandbox2: Sandbox, docker_cli: DockerCli,
                                        cli_path: str) -> None:
    for node in sandbox2.nodes:
        res = await docker_cli(node.docker_host, "run", "--rm", "busybox", "echo", "hi",
                               cli=cli_path)
        assert (res.returncode, res.stdout) == (0, "hi\n"), res.stderr
        hostname = await docker_cli(node.docker_host, "run", "--rm", "--net=host", "busybox",
                                    "hostname", cli=cli_path)
        assert hostname.stdout.strip() == node.name


async def test_pull_goes_through_local_registry(sandbox2: Sandbox, docker_cli: DockerCli) -> None:
    node = sandbox2.nodes[1]
    assert (await docker_cli(node.docker_host, "rmi", "busybox")).returncode == 0
    missing = await docker_cli(node.docker_host, "image", "inspect", "busybox")
    assert missing.returncode != 0
    pulled = await docker_cli(node.docker_host, "pull", "busybox")
    assert pulled.returncode == 0, pulled.stderr
    assert (await docker_cli(node.docker_host, "image", "inspect", "busybox")).returncode == 0
    # Anything the registry lacks fails (fast) instead of reaching the internet.
    absent = await docker_cli(node.docker_host, "pull", "shoal-no-such-image", timeout=60)
    assert absent.returncode != 0


@pytest.mark.parametrize("port", [80, 8080])
async def test_both_nodes_publish_the_same_host_port(sandbox2: Sandbox, docker_cli: DockerCli,
                                                     port: int) -> None:
    ids = []
    for node in sandbox2.nodes:
        res = await docker_cli(node.docker_host, "run", "-d", "-p", f"{port}:80", "busybox",
                               "sh", "-c", f"echo {node.name} > /tmp/who && httpd -f -p 80 -h /tmp")
        assert res.returncode == 0, res.stderr
        ids.append(res.stdout.strip())
    try:
        for node in sandbox2.nodes:
            body = b""
            for _ in range(50):  # httpd needs a moment to bind
                try:
                    body = await http_get(node.ip, port, "/who")
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            assert body.endswith(f"{node.name}\n".encode())
    finally:
        for node, cid in zip(sandbox2.nodes, ids, strict=True):
            await docker_cli(node.docker_host, "rm", "-f", cid)


async def test_kill_and_restart_keep_identity_and_data(make_sandbox: MakeSandbox,
                                                       docker_cli: DockerCli) -> None:
    sandbox = await make_sandbox(2)
    node = sandbox.nodes[0]
    before = await info(docker_cli, node.docker_host)
    created = await docker_cli(node.docker_host, "run", "-d", "--name", "keep", "busybox",
                               "sleep", "1000")
    assert created.returncode == 0, created.stderr
    addr = node.addr

    await node.kill()
    assert not node.running
    assert not await ping("127.0.0.1", node.host_port, timeout=1)
    assert (await docker_cli(node.docker_host, "ps", timeout=20)).returncode != 0
    # The other host is unaffected.
    assert (await info(docker_cli, sandbox.nodes[1].docker_host))["Name"] == "node-1"

    await node.start()
    assert node.running and node.addr == addr
    after = await info(docker_cli, node.docker_host)
    assert (after["ID"], after["Name"]) == (before["ID"], "node-0")
    state_res = await docker_cli(node.docker_host, "inspect", "-f", "{{.State.Running}}", "keep")
    assert state_res.stdout.strip() == "false"  # the container died with its host, data kept
    restarted = await docker_cli(node.docker_host, "start", "keep")
    assert restarted.returncode == 0, restarted.stderr


async def test_persistent_cli_mode(host_ready: None, docker_cli: DockerCli,
                                   module_tag: str) -> None:
    tag = "p" + module_tag[1:]
    try:
        summary = await cli.sandbox_up(1, ["node-0:role=cli"], tag)
        assert "discovery: nodes://127.0.0.1:" in summary
        listed = await cli.sandbox_ls(tag)
        assert [(n.name, n.running, n.responding, n.labels) for n in listed] == [
            ("node-0", True, True, {"role": "cli"})]
        res = await docker_cli(f"tcp://{listed[0].addr}", "run", "--rm", "busybox", "true")
        assert res.returncode == 0, res.stderr
    finally:
        await cli.sandbox_down(tag)
    assert await state.read_state(tag) is None
    assert not await ping("127.0.0.1", int(listed[0].addr.rsplit(":", 1)[1]), timeout=1)


async def test_label_specs() -> None:
    assert cli.parse_labels(["zone=a", "node-1:storage=ssd", "node-0:url=http://x"], 2) == [
        {"zone": "a", "url": "http://x"}, {"zone": "a", "storage": "ssd"}]
    with pytest.raises(ValueError):
        cli.parse_labels(["node-2:x=y"], 2)
    with pytest.raises(ValueError):
        cli.parse_labels(["novalue"], 2)
