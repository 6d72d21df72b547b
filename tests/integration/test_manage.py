"""Issue 2 acceptance: real docker CLIs through `shoal manage` over three real engines."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess

import pexpect
import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import (
    DOCKER_NEW,
    DOCKER_OLD,
    DockerCli,
    remove_all_containers,
)
from tests.integration.manager import Manager, free_port, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

LISTENERS = ["tcp", "unix"]
CLIS = [DOCKER_NEW, DOCKER_OLD]


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


def host_of(manager: Manager, listener: str) -> str:
    return manager.tcp if listener == "tcp" else f"unix://{manager.unix_socket}"


async def ok(docker_cli: DockerCli, host: str, *args: str, cli: str, **kw: object) -> str:
    result = await docker_cli(host, *args, cli=cli, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("cli", CLIS)
async def test_info_and_version(
    manager: Manager, docker_cli: DockerCli, cli: str, listener: str
) -> None:
    host = host_of(manager, listener)
    info = await ok(docker_cli, host, "info", cli=cli)
    assert "Nodes: 3" in info
    assert info.count("Status: Healthy") == 3
    for name in ("node-0", "node-1", "node-2"):
        assert f" {name}: 127.0.0.1:" in info
    assert "Strategy: spread" in info
    version = await ok(docker_cli, host, "version", cli=cli)
    assert "shoal/" in version


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("cli", CLIS)
async def test_container_lifecycle(
    manager: Manager, sandbox3: Sandbox, docker_cli: DockerCli, cli: str, listener: str
) -> None:
    host = host_of(manager, listener)
    await remove_all_containers(sandbox3)
    assert (await ok(docker_cli, host, "run", "--rm", "busybox", "echo", "hi", cli=cli)) == "hi\n"

    names = [f"s{i}" for i in range(6)]
    for name in names:
        await ok(docker_cli, host, "run", "-d", "--name", name, "busybox", "sleep", "300", cli=cli)
    listing = await ok(docker_cli, host, "ps", "--format", "{{.Names}}", cli=cli)
    shown = listing.split()
    assert sorted(n.split("/", 1)[1] for n in shown) == names
    per_node = collections.Counter(n.split("/", 1)[0] for n in shown)
    assert per_node == {"node-0": 2, "node-1": 2, "node-2": 2}
    node_of = {n.split("/", 1)[1]: n.split("/", 1)[0] for n in shown}
    for name in names:
        node = await ok(docker_cli, host, "inspect", "-f", "{{.Node.Name}}", name, cli=cli)
        assert node.strip() == node_of[name]
        # The same container by its node-qualified name.
        qualified = f"{node_of[name]}/{name}"
        cid = await ok(docker_cli, host, "inspect", "-f", "{{.Id}}", qualified, cli=cli)
        assert len(cid.strip()) == 64

    await ok(docker_cli, host, "stop", "-t", "1", "s0", cli=cli)
    state = await ok(docker_cli, host, "inspect", "-f", "{{.State.Status}}", "s0", cli=cli)
    assert state.strip() == "exited"
    await ok(docker_cli, host, "start", "s0", cli=cli)
    state = await ok(docker_cli, host, "inspect", "-f", "{{.State.Running}}", "s0", cli=cli)
    assert state.strip() == "true"
    await ok(docker_cli, host, "restart", "-t", "1", "s1", cli=cli)
    await ok(docker_cli, host, "pause", "s2", cli=cli)
    assert "(Paused)" in await ok(docker_cli, host, "ps", "--filter", "name=s2", cli=cli)
    await ok(docker_cli, host, "unpause", "s2", cli=cli)
    assert "sleep 300" in await ok(docker_cli, host, "top", "s3", cli=cli)
    stats = await ok(docker_cli, host, "stats", "--no-stream", "s3", cli=cli)
    assert "s3" in stats or "MEM USAGE" in stats
    await ok(docker_cli, host, "rename", "s4", "s4-renamed", cli=cli)
    assert "s4-renamed" in await ok(docker_cli, host, "ps", "--format", "{{.Names}}", cli=cli)
    await ok(docker_cli, host, "rm", "-f", "s4-renamed", "s5", cli=cli)
    remaining = (await ok(docker_cli, host, "ps", "-a", "--format", "{{.Names}}", cli=cli)).split()
    assert len(remaining) == 4

    # wait: the exit code once the container ends.
    await ok(docker_cli, host, "run", "-d", "--name", "w1", "busybox", "sh", "-c",
             "sleep 1; exit 7", cli=cli)
    assert (await ok(docker_cli, host, "wait", "w1", cli=cli)).strip() == "7"
    await remove_all_containers(sandbox3)


@pytest.mark.parametrize("cli", CLIS)
async def test_logs_follow_streams(
    manager: Manager, docker_cli: DockerCli, cli: str
) -> None:
    host = manager.tcp
    await ok(
        docker_cli, host, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
        "i=0; while [ $i -lt 100 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
        cli=cli,
    )
    env = dict(os.environ, DOCKER_HOST=host)
    proc = await asyncio.create_subprocess_exec(
        cli, "logs", "-f", "ticker", env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while len(seen) < 8:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, "logs -f ended early"
            seen.append(line.decode().strip())
    finally:
        proc.kill()
        await proc.wait()
    assert seen[:3] == ["tick-0", "tick-1", "tick-2"]
    # Lines keep arriving after the first read: the stream is live, not a snapshot.
    assert seen[7] == "tick-7"
    await ok(docker_cli, host, "rm", "-f", "ticker", cli=cli)


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("cli", CLIS)
async def test_interactive_run_and_exec(manager: Manager, cli: str, listener: str) -> None:
    host = host_of(manager, listener)

    def drive() -> tuple[int | None, int | None]:
        env = dict(os.environ, DOCKER_HOST=host)
        child = pexpect.spawn(cli, ["run", "-it", "--name", "tty1", "busybox", "sh"],
                              env=env, timeout=20, encoding="utf-8")
        child.expect("# ")
        child.sendline("echo answer-$((6*7))")
        child.expect("answer-42")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
        child.close()
        subprocess.run([cli, "run", "-d", "--name", "tty2", "busybox", "sleep", "60"],
                       env=env, check=True, capture_output=True)
        child = pexpect.spawn(cli, ["exec", "-it", "tty2", "sh"], env=env, timeout=20,
                              encoding="utf-8")
        child.expect("# ")
        child.sendline("echo exec-$((1+1))")
        child.expect("exec-2")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        run_status = child.exitstatus
        subprocess.run([cli, "rm", "-f", "tty1", "tty2"], env=env, capture_output=True)
        return 5, run_status

    expected, exec_status = await asyncio.to_thread(drive)
    assert exec_status == 0
    assert expected == 5


async def test_run_exit_code_and_stdin(manager: Manager, docker_cli: DockerCli) -> None:
    result = await docker_cli(manager.tcp, "run", "--rm", "busybox", "sh", "-c", "exit 3")
    assert result.returncode == 3
    result = await docker_cli(manager.tcp, "run", "-i", "--rm", "busybox", "cat", input="piped\n")
    assert result.stdout == "piped\n"


@pytest.mark.parametrize("cli", CLIS)
async def test_pull_images_rmi(
    manager: Manager, sandbox3: Sandbox, docker_cli: DockerCli, cli: str
) -> None:
    host = manager.tcp
    pulled = await docker_cli(host, "pull", "busybox", cli=cli)
    assert pulled.returncode == 0, pulled.stderr
    for node in ("node-0", "node-1", "node-2"):
        assert node in pulled.stdout
    images = await ok(docker_cli, host, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                      cli=cli)
    busybox_lines = [line for line in images.splitlines() if line.startswith("busybox:latest ")]
    assert len(busybox_lines) == 1, images  # merged across the three nodes
    await ok(docker_cli, host, "tag", "busybox", f"shoaltest/bb-{os.path.basename(cli)}:v1",
             cli=cli)
    tagged = f"shoaltest/bb-{os.path.basename(cli)}:v1"
    assert tagged.split(":")[0] in await ok(docker_cli, host, "images", cli=cli)
    await ok(docker_cli, host, "rmi", tagged, cli=cli)
    assert tagged.split(":")[0] not in await ok(docker_cli, host, "images", cli=cli)
    # Pull on one node only, named by its prefix.
    only = await docker_cli(host, "pull", "node-1/busybox", cli=cli)
    assert only.returncode == 0, only.stderr
    assert "node-1" in only.stdout and "node-0" not in only.stdout


@pytest.mark.parametrize("cli", CLIS)
async def test_conflict_and_not_found(manager: Manager, docker_cli: DockerCli, cli: str) -> None:
    host = manager.tcp
    await ok(docker_cli, host, "run", "-d", "--name", "dup", "busybox", "sleep", "60", cli=cli)
    again = await docker_cli(host, "run", "-d", "--name", "dup", "busybox", "sleep", "60", cli=cli)
    assert again.returncode != 0
    assert 'Conflict. The container name "/dup" is already in use' in again.stderr
    missing = await docker_cli(host, "logs", "no-such-thing", cli=cli)
    assert missing.returncode != 0
    assert "No such container: no-such-thing" in missing.stderr
    await ok(docker_cli, host, "rm", "-f", "dup", cli=cli)
    # An image no registry has: the pull shoal tries on the chosen node fails, cleanly.
    nope = await docker_cli(host, "run", "--rm", "--name", "nope", "no-such-image:v9", cli=cli)
    assert nope.returncode != 0
    assert "Error response from daemon" in nope.stderr  # the engine's own pull error
    listed = await ok(docker_cli, host, "ps", "-a", "--filter", "name=nope", "-q", cli=cli)
    assert listed.strip() == ""


async def test_status_codes_over_http(manager: Manager) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(
            manager.url + "/containers/create?name=dup2", json={"Image": "busybox", "Cmd": ["true"]}
        ) as resp:
            assert resp.status == 201
        async with session.post(
            manager.url + "/v1.41/containers/create?name=dup2",
            json={"Image": "busybox", "Cmd": ["true"]},
        ) as resp:
            assert resp.status == 409
            assert "already in use" in (await resp.json())["message"]
        async with session.get(manager.url + "/containers/nope/json") as resp:
            assert resp.status == 404
            assert (await resp.json())["message"] == "No such container: nope"
        async with session.delete(manager.url + "/containers/dup2?force=1") as resp:
            assert resp.status == 204


async def test_bad_input_keeps_serving(manager: Manager) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        cases = [
            ("POST", "/containers/create", b"{not json", 400),
            ("POST", "/containers/create", b"[1, 2]", 400),
            ("POST", "/containers/create", json.dumps({"Image": 5}).encode(), 400),
            ("POST", "/containers/create",
             json.dumps({"Image": "busybox", "HostConfig": 7}).encode(), 400),
            ("GET", "/no/such/route", b"", 404),
            ("POST", "/containers/json", b"", 405),
            ("GET", "/containers/json?filters=%7Bbad", b"", 400),
            ("GET", "/containers/json?limit=abc", b"", 400),
        ]
        for method, path, body, status in cases:
            async with session.request(
                method, manager.url + path, data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                assert resp.status == status, (method, path, await resp.text())
                assert "message" in await resp.json(content_type=None)
        # An oversize body is refused from its declared length alone.
        reader, writer = await asyncio.open_connection("127.0.0.1", manager.port)
        writer.write(
            b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 900000000\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413"), head
        writer.close()
        async with session.get(manager.url + "/_ping") as resp:
            assert resp.status == 200
    assert manager.proc is not None and manager.proc.returncode is None


async def test_ping_headers(manager: Manager) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for method in ("GET", "HEAD"):
            async with session.request(method, manager.url + "/_ping") as resp:
                assert resp.status == 200
                assert resp.headers["Api-Version"] == "1.41"
                assert resp.headers["Ostype"] == "linux"
                assert resp.headers["Swarm"] == "inactive"
                assert "Docker-Experimental" in resp.headers
        async with session.get(manager.url + "/v1.24/version") as resp:
            version = await resp.json()
            assert version["ApiVersion"] == "1.41"
            assert version["MinAPIVersion"] == "1.12"


async def test_docker_py(manager: Manager) -> None:
    import docker

    def flows() -> None:
        client = docker.DockerClient(base_url=manager.tcp, timeout=60)
        assert client.ping()
        assert "Nodes: 3" in json.dumps(client.info()["SystemStatus"]).replace('", "', ": ")
        out = client.containers.run("busybox", ["echo", "from-docker-py"], remove=True)
        assert out == b"from-docker-py\n"
        c = client.containers.run("busybox", ["sleep", "60"], detach=True, name="dpy1")
        c.reload()
        assert c.status == "running"
        assert c.attrs["Node"]["Name"].startswith("node-")
        names = [x.name for x in client.containers.list()]
        assert "dpy1" in names
        ex = c.exec_run(["echo", "in-exec"])
        assert ex.exit_code == 0 and ex.output == b"in-exec\n"
        c.stop(timeout=1)
        assert client.containers.get("dpy1").status == "exited"
        c.remove(force=True)
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("dpy1")
        image = client.images.get("busybox")
        assert "busybox:latest" in image.tags
        client.close()

    await asyncio.to_thread(flows)


async def test_drop_in_invocation(sandbox3: Sandbox, docker_cli: DockerCli) -> None:
    """The exact form classic Swarm's own test helpers use."""
    port = free_port()
    first_two = ",".join(n.addr for n in sandbox3.nodes[:2])
    mgr = Manager(
        ["-l", "debug", "-experimental", "manage", "-H", f"127.0.0.1:{port}", "--heartbeat=1s",
         f"nodes://{first_two}"],
        port,
    )
    await mgr.start()
    try:
        await mgr.wait_nodes(2)
        info = await docker_cli(mgr.tcp, "info")
        assert "Nodes: 2" in info.stdout
        assert (await mgr.info())["ExperimentalBuild"] is True
    finally:
        await mgr.stop()


async def test_node_failure_and_return(make_sandbox: object, docker_cli: DockerCli) -> None:
    sandbox = await make_sandbox(2)  # type: ignore[operator]
    port = free_port()
    mgr = Manager(
        ["manage", "-H", f"127.0.0.1:{port}", "--engine-refresh-min-interval", "1s",
         "--engine-refresh-max-interval", "2s", "--engine-failure-retry", "2",
         sandbox.discovery],
        port,
    )
    await mgr.start()
    try:
        await mgr.wait_nodes(2)
        await sandbox.nodes[1].kill()

        async def down() -> bool:
            node = (await mgr.node_status()).get("node-1", {})
            return node.get("Status") == "Unhealthy" and bool(node.get("Error"))

        await wait_until(down, 30, "node-1 Unhealthy with an error")
        # The other node keeps serving.
        out = await docker_cli(mgr.tcp, "run", "--rm", "busybox", "echo", "still-here")
        assert out.stdout == "still-here\n", out.stderr
        await sandbox.nodes[1].start()

        async def back() -> bool:
            return (await mgr.node_status()).get("node-1", {}).get("Status") == "Healthy"

        await wait_until(back, 60, "node-1 Healthy again")
        assert mgr.proc is not None and mgr.proc.returncode is None
    finally:
        await mgr.stop()
