"""Issue 11: what real clients (docker-py, the docker CLI) and classic Swarm's tooling expect,
checked through `shoal manage` over two sandbox engines, and against a bare engine where the
engine's own answer is the reference."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import tarfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, run_docker
from tests.integration.conftest import docker_ok as cli
from tests.integration.dockerpy import API, blocking, engine_clients
from tests.integration.manager import Manager, running_manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox2(host_ready: None, module_tag: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(2, tag=module_tag) as sandbox:
        yield sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def manager(sandbox2: Sandbox) -> AsyncIterator[Manager]:
    async with running_manager(sandbox2.discovery, nodes=2) as mgr:
        yield mgr


@pytest.fixture(scope="module")
def engines(sandbox2: Sandbox) -> Iterator[list[docker.APIClient]]:
    """docker-py clients of the nodes' engines themselves."""
    with engine_clients(sandbox2) as clients:
        yield clients


def raw(client: docker.APIClient, method: str, path: str, **params: Any) -> tuple[int, Any]:
    """Status and decoded body of one call, without docker-py's own error handling."""
    response = getattr(client, f"_{method}")(client._url(path), params=params or None)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body


def rootfs_tar(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_from(path: str, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def context_tar(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


async def node_of(manager: Manager, name: str) -> str:
    return (await cli(manager.tcp, "inspect", "-f", "{{.Node.Name}}", name)).strip()


async def crowd(manager: Manager, node: str, prefix: str, count: int = 2) -> None:
    """Running containers on NODE, so the spread strategy prefers the other node."""
    for i in range(count):
        await cli(manager.tcp, "run", "-d", "--name", f"{prefix}{i}", "-e",
                  f"constraint:node=={node}", "busybox", "sleep", "600")


# --- docker-py's suite ------------------------------------------------------------------------

SWARM_READS = ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs")


async def test_swarm_routes_answer_like_an_engine_outside_a_swarm(
    api: docker.APIClient, engines: list[docker.APIClient]
) -> None:
    status, body = await blocking(lambda: raw(api, "post", "/swarm/leave", force=True))
    assert (status, body) == (503, {"message": "This node is not part of a swarm"})
    for path in SWARM_READS:
        expected = await blocking(lambda p=path: raw(engines[0], "get", p))  # type: ignore[misc]
        assert expected[0] == 503 and expected[1]["message"].startswith(
            "This node is not a swarm manager"), expected
        got = await blocking(lambda p=path: raw(api, "get", p))  # type: ignore[misc]
        assert got == expected, path
    # docker-py's own teardown call, which accepts 503 and 406
    assert await blocking(lambda: api.leave_swarm(force=True)) is True


async def test_import_answers_the_engines_final_message(api: docker.APIClient) -> None:
    text = await blocking(lambda: api.import_image_from_data(
        rootfs_tar("imported\n"), repository="compat-import", tag="1",
        changes=["USER nobody", 'CMD ["cat", "/hello.txt"]']))
    result = json.loads(text)  # one JSON object, as from one engine
    assert set(result) == {"status"}, text
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", result["status"]), text
    inspected = await blocking(lambda: api.inspect_image("compat-import:1"))
    assert inspected["Id"] == result["status"]
    by_id = await blocking(lambda: api.inspect_image(result["status"]))
    # every `changes` value applied, not only the first
    assert (by_id["Config"]["User"], by_id["Config"]["Cmd"]) == ("nobody", ["cat", "/hello.txt"])


async def test_image_inspect_by_repo_digest(
    sandbox2: Sandbox, manager: Manager, engines: list[docker.APIClient]
) -> None:
    """As docker-py's `images.pull('name@sha256:...')`: pull by digest, then inspect by it."""
    assert sandbox2.registry is not None
    remote = f"{sandbox2.registry.address}/library/compat-digest"

    def publish() -> str:  # an image only the registry has (served as compat-digest)
        engines[0].tag("busybox:latest", remote, "1")
        for _ in engines[0].push(remote, tag="1", stream=True, decode=True):
            pass
        digest = engines[0].inspect_image(f"{remote}:1")["RepoDigests"][0].split("@", 1)[1]
        engines[0].remove_image(f"{remote}:1")
        return str(digest)

    digest = await blocking(publish)
    client = docker.DockerClient(base_url=manager.tcp, version=API, timeout=120)
    try:
        image = await blocking(lambda: client.images.pull(f"compat-digest@{digest}"))
        assert f"compat-digest@{digest}" in image.attrs["RepoDigests"]
        got = await blocking(lambda: client.api.inspect_image(f"compat-digest@{digest}"))
        assert got["Id"] == image.id
    finally:
        client.close()


async def test_distribution_inspect_is_forwarded(
    sandbox2: Sandbox, api: docker.APIClient, engines: list[docker.APIClient]
) -> None:
    assert sandbox2.registry is not None
    ref = f"{sandbox2.registry.address}/library/busybox:latest"
    expected = await blocking(lambda: engines[0].inspect_distribution(ref))
    assert expected["Descriptor"]["digest"].startswith("sha256:")
    got = await blocking(lambda: api.inspect_distribution(ref))
    assert got == expected


async def attach_logs(host: str, cid: str) -> bytes:
    """`POST /containers/{id}/attach?logs=1&stream=0` hijacked, read to EOF: stdout's bytes.

    Read with a plain socket: docker-py itself loses bytes that arrive in the same read as
    the 101 head (its HTTP layer buffers them), even from a bare engine.
    """
    hostname, _, port = host.removeprefix("tcp://").rpartition(":")
    reader, writer = await asyncio.open_connection(hostname, int(port))
    try:
        writer.write(
            f"POST /v{API}/containers/{cid}/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1"
            "\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            "Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    out = b""
    while len(body) >= 8:  # stdcopy frames: stream, 3 zero bytes, big-endian length
        size = int.from_bytes(body[4:8], "big")
        if body[0] == 1:
            out += body[8 : 8 + size]
        body = body[8 + size :]
    return out


async def test_attach_logs_without_stream_returns_the_logs(
    sandbox2: Sandbox, manager: Manager, api: docker.APIClient
) -> None:
    def run() -> str:
        cid = api.create_container("busybox", ["sh", "-c", "echo hello; echo world"],
                                   name="compat-attach")["Id"]
        api.start(cid)
        assert api.wait(cid, timeout=60)["StatusCode"] == 0
        return str(cid)

    cid = await blocking(run)
    node = await node_of(manager, "compat-attach")
    engine = next(n for n in sandbox2.nodes if n.name == node)
    for _ in range(5):
        assert await attach_logs(engine.docker_host, cid) == b"hello\nworld\n"  # reference
    for _ in range(5):
        assert await attach_logs(manager.tcp, cid) == b"hello\nworld\n"


async def test_remove_link(manager: Manager, api: docker.APIClient) -> None:
    def run() -> Any:
        api.start(api.create_container("busybox", ["sleep", "600"], name="compat-linked"))
        cid = api.create_container(
            "busybox", ["sleep", "600"], name="compat-linker",
            host_config=api.create_host_config(links={"compat-linked": "db"}))["Id"]
        api.start(cid)
        assert api.inspect_container(cid)["HostConfig"]["Links"] == [
            "/compat-linked:/compat-linker/db"]
        api.remove_container("compat-linker/db", link=True)
        return api.inspect_container(cid)["HostConfig"]["Links"]

    assert not await blocking(run)


async def test_build_with_cache_from_runs_where_the_image_is(
    manager: Manager, api: docker.APIClient, engines: list[docker.APIClient]
) -> None:
    dockerfile = "FROM busybox\nRUN echo cached-layer > /layer\n"

    def build_on_node1() -> None:
        for _ in engines[1].build(fileobj=context_tar(dockerfile), custom_context=True,
                                  tag="compat-cache:1", rm=True, decode=True):
            pass

    await blocking(build_on_node1)
    await crowd(manager, "node-1", "compat-cachecrowd")  # spread alone would pick node-0

    async def seen() -> bool:
        names = await cli(manager.tcp, "images", "--format", "{{.Repository}}:{{.Tag}}")
        return "compat-cache:1" in names.split()

    await wait_until(seen, 30, "compat-cache:1 in shoal's image list")

    def build_through_shoal() -> list[str]:
        out = []
        for chunk in api.build(fileobj=context_tar(dockerfile), custom_context=True,
                               tag="compat-cached:1", cache_from=["compat-cache:1"], rm=True,
                               decode=True):
            out.append(str(chunk.get("stream") or chunk.get("error") or ""))
        return out

    log = "".join(await blocking(build_through_shoal))
    assert "Using cache" in log, log
    built = await blocking(lambda: engines[1].inspect_image("compat-cached:1"))
    cached = await blocking(lambda: engines[1].inspect_image("compat-cache:1"))
    assert built["Id"] == cached["Id"]  # built on node-1, from its cache


async def test_info_images_counts_like_the_list(
    manager: Manager, api: docker.APIClient, engines: list[docker.APIClient]
) -> None:
    """Checked in several states, so that a double count and an omission cannot cancel out."""

    async def counts() -> tuple[int, int]:
        listed = await blocking(lambda: api.images(all=True))
        return (await blocking(api.info))["Images"], len(listed)

    # an image on one node only, and busybox on both
    await blocking(lambda: engines[0].tag("busybox:latest", "compat-count", "1"))

    async def seen() -> bool:
        return any("compat-count:1" in (i.get("RepoTags") or [])
                   for i in await blocking(lambda: api.images()))

    await wait_until(seen, 30, "compat-count:1 in shoal's image list")
    info, listed = await counts()
    assert info == listed, "tagged images on one and on both nodes"

    dockerfile = "FROM busybox\nRUN echo a > /a\nRUN echo b > /b\n"

    def build() -> None:  # intermediate, untagged layers
        for _ in api.build(fileobj=context_tar(dockerfile), custom_context=True,
                           tag="compat-layers:1", rm=True, decode=True):
            pass

    await blocking(build)
    untagged = [i for i in await blocking(lambda: api.images(all=True))
                if i.get("RepoTags") in (None, [], ["<none>:<none>"])]
    assert untagged, "the build left untagged layers"
    info, listed = await counts()
    assert info == listed, "with untagged layers"


# --- classic Swarm's behaviour ---------------------------------------------------------------


async def test_version_reads_as_a_swarm_manager(manager: Manager) -> None:
    server = json.loads(await cli(manager.tcp, "version", "--format", "{{json .Server}}"))
    assert server["Version"].startswith("swarm/"), server
    names = [server.get("Platform", {}).get("Name", "")]
    names += [c.get("Name", "") for c in server.get("Components") or []]
    assert any("shoal" in n for n in names), server


async def test_image_affinity_retry_leaves_no_affinity(
    manager: Manager, engines: list[docker.APIClient]
) -> None:
    await blocking(lambda: engines[1].tag("busybox:latest", "compat-only", "1"))
    await crowd(manager, "node-1", "compat-affcrowd")  # spread picks node-0, which lacks it

    async def seen() -> bool:
        names = await cli(manager.tcp, "images", "--format", "{{.Repository}}:{{.Tag}}")
        return "compat-only:1" in names.split()

    await wait_until(seen, 30, "compat-only:1 in shoal's image list")
    await cli(manager.tcp, "create", "--name", "compat-aff", "compat-only:1", "true",
              timeout=120)
    assert await node_of(manager, "compat-aff") == "node-1"  # the retry did happen
    config = json.loads(await cli(manager.tcp, "inspect", "-f", "{{json .Config}}",
                                  "compat-aff"))
    assert not [e for e in config.get("Env") or [] if "image==" in e], config["Env"]
    labels = config.get("Labels") or {}
    assert not [k for k, v in labels.items() if "image==" in v or "image==" in k], labels


class SwitchableProxy:
    """A loopback TCP relay to one engine that can be made to refuse new connections, so the
    manager believes the engine healthy until a create tries it.

    The manager's `/events` stream is left open when refusing: cutting it would make the
    manager find the engine down before the create does.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.conns: list[tuple[list[bool], asyncio.StreamWriter, asyncio.StreamWriter]] = []

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        events = [False]
        self.conns.append((events, writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       from_client: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if from_client and re.match(rb"GET \S*/events[?\s]", data):
                        events[0] = True  # a kept-alive connection may carry it later
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def refuse(self) -> None:
        """Stop listening and cut every open connection but the event stream."""
        assert self.server is not None
        self.server.close()
        for events, writer, up_writer in self.conns:
            if not events[0]:
                writer.transport.abort()
                up_writer.transport.abort()
        await self.server.wait_closed()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for _, writer, up_writer in self.conns:
            writer.transport.abort()
            up_writer.transport.abort()


async def test_createretry_zero_fails_on_an_unreachable_engine(sandbox2: Sandbox) -> None:
    proxy = SwitchableProxy(sandbox2.nodes[0].host_port)
    await proxy.start()
    try:
        discovery = f"nodes://127.0.0.1:{proxy.port},{sandbox2.nodes[1].addr}"
        # Slow refresh: only the failed create may find the engine down. A failure retry of 1
        # makes that one failure flag the engine unhealthy, deterministically.
        async with running_manager(discovery, "--engine-failure-retry", "1",
                                   "--engine-refresh-min-interval", "60s",
                                   "--engine-refresh-max-interval", "61s", nodes=2) as mgr:
            await proxy.refuse()
            first = await run_docker(mgr.tcp, "create", "--name", "compat-retry0", "-e",
                                     "constraint:node==~node-0", "busybox", "true",
                                     cli=DOCKER_NEW)
            if first.returncode == 0:
                where = await node_of(mgr, "compat-retry0")
                pytest.fail(f"create succeeded on {where}; manager log:\n{mgr.log()}")
            assert "Cannot connect to the docker engine endpoint" in first.stderr, first.stderr
            await cli(mgr.tcp, "create", "--name", "compat-retry1", "-e",
                      "constraint:node==~node-0", "busybox", "true")
            assert await node_of(mgr, "compat-retry1") == "node-1"
    finally:
        proxy.close()


async def test_createretry_tries_the_next_node(sandbox2: Sandbox) -> None:
    """With `swarm.createretry=1`, a create whose engine cannot be reached goes to the next."""
    proxy = SwitchableProxy(sandbox2.nodes[0].host_port)
    await proxy.start()
    try:
        discovery = f"nodes://127.0.0.1:{proxy.port},{sandbox2.nodes[1].addr}"
        async with running_manager(discovery, "--cluster-opt", "swarm.createretry=1",
                                   "--engine-refresh-min-interval", "60s",
                                   "--engine-refresh-max-interval", "61s", nodes=2) as mgr:
            await proxy.refuse()
            await cli(mgr.tcp, "create", "--name", "compat-retried", "-e",
                      "constraint:node==~node-0", "busybox", "true")
            assert await node_of(mgr, "compat-retried") == "node-1"
            assert "Failed to create container" in mgr.log()  # node-0 was tried first
    finally:
        proxy.close()


@pytest.mark.parametrize("name", ["co", "on", "ers", "tainer"])
async def test_container_named_like_part_of_the_route(manager: Manager, name: str) -> None:
    await cli(manager.tcp, "run", "-d", "--name", name, "busybox", "sh", "-c",
              "echo started; exec sleep 600")
    try:
        top = await cli(manager.tcp, "top", name)
        assert "sleep 600" in top
        assert (await cli(manager.tcp, "logs", name)) == "started\n"
        inspected = json.loads(await cli(manager.tcp, "inspect", "--size", name))
        assert inspected[0]["Name"] == f"/{name}" and "SizeRootFs" in inspected[0]
        await cli(manager.tcp, "stop", "-t", "1", name)
        state = await cli(manager.tcp, "inspect", "-f", "{{.State.Running}}", name)
        assert state.strip() == "false"
    finally:
        await run_docker(manager.tcp, "rm", "-f", name, cli=DOCKER_NEW)


async def test_create_passes_the_engines_warnings(
    api: docker.APIClient, engines: list[docker.APIClient]
) -> None:
    # No memory limit with the OOM killer disabled: dockerd warns but creates.
    def create(client: docker.APIClient, name: str) -> Any:
        return client.create_container(
            "busybox", "true", name=name,
            host_config=client.create_host_config(oom_kill_disable=True))

    expected = await blocking(lambda: create(engines[0], "compat-warn-ref"))
    assert expected["Warnings"], "the engine warns about this config"
    got = await blocking(lambda: create(api, "compat-warn"))
    assert got["Warnings"] == expected["Warnings"]


@pytest.mark.timeout(240)  # one engine alone takes ~30 s to give up on a missing plugin
async def test_missing_volume_driver_is_tried_once(manager: Manager) -> None:
    start = await asyncio.to_thread(os.path.getsize, manager.log_path)
    result = await run_docker(manager.tcp, "create", "--name", "compat-voldrv",
                              "--volume-driver", "nosuchdriver", "-v", "compat-vd:/data",
                              "busybox", "true", cli=DOCKER_NEW, timeout=200)
    assert result.returncode != 0
    assert ('error looking up volume plugin nosuchdriver: plugin "nosuchdriver" not found'
            in result.stderr), result.stderr
    log = await asyncio.to_thread(read_from, manager.log_path, start)
    assert "retrying" not in log, log  # neither the image retry nor a plain create retry
