"""Issue 4 acceptance, images and build: the real docker CLI v28 and docker-py through
`shoal manage` over three real engines, checked against the engines themselves."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path

import aiohttp
import docker
import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, DOCKER_OLD, run_docker
from tests.integration.manager import Manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCKERFILE = """\
FROM busybox
ARG greeting=hi
RUN echo "$greeting" > /greeting
COPY hello.txt /hello.txt
LABEL shoal.test={label}
"""


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


async def ok(host: str, *args: str, cli: str = DOCKER_NEW, timeout: float = 60) -> str:
    result = await run_docker(host, *args, cli=cli, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}{result.stdout}"
    return result.stdout


async def node_image_ids(sandbox: Sandbox, ref: str) -> dict[str, str]:
    """{node name: image ID or ""} asked of every engine directly."""
    out: dict[str, str] = {}
    for node in sandbox.nodes:
        res = await run_docker(node.docker_host, "images", "-q", "--no-trunc", ref)
        out[node.name] = res.stdout.strip()
    return out


def write_file(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def make_context(label: str) -> str:
    ctx = tempfile.mkdtemp(prefix="shoal-build-")
    Path(ctx, "Dockerfile").write_text(DOCKERFILE.format(label=label))
    Path(ctx, "hello.txt").write_text("hello\n")
    return ctx


async def test_build_with_constraint_lands_on_node2(
    manager: Manager, sandbox3: Sandbox
) -> None:
    ctx = make_context("node2")
    out = await ok(
        manager.tcp, "build", "-t", "shoal-built:n2",
        "--build-arg", "constraint:node==node-2", "--build-arg", "greeting=yo", ctx,
    )
    assert "Successfully tagged shoal-built:n2" in out
    ids = await node_image_ids(sandbox3, "shoal-built:n2")
    assert ids["node-2"] and not ids["node-0"] and not ids["node-1"], ids
    # The expression was a scheduling rule, not a build arg the engine saw.
    history = await ok(sandbox3.nodes[2].docker_host, "history", "--no-trunc", "shoal-built:n2")
    assert "constraint" not in history
    label = await ok(
        manager.tcp, "image", "inspect", "-f", '{{index .Config.Labels "shoal.test"}}',
        "shoal-built:n2",
    )
    assert label.strip() == "node2"
    # `docker run` of the image lands where the image is, every time.
    for i in range(3):
        await ok(manager.tcp, "run", "-d", "--name", f"built-run-{i}", "shoal-built:n2",
                 "sleep", "60")
        node = await ok(manager.tcp, "inspect", "-f", "{{.Node.Name}}", f"built-run-{i}")
        assert node.strip() == "node-2"
    out = await ok(manager.tcp, "run", "--rm", "shoal-built:n2", "cat", "/greeting", "/hello.txt")
    assert out == "yo\nhello\n"
    await ok(manager.tcp, "rm", "-f", "built-run-0", "built-run-1", "built-run-2")


@pytest.mark.parametrize("cli", [DOCKER_NEW, DOCKER_OLD])
async def test_classic_builder_and_buildkit_refused(
    manager: Manager, sandbox3: Sandbox, cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_context("classic")
    tag = f"shoal-classic-{os.path.basename(cli)}-{'new' if cli == DOCKER_NEW else 'old'}"
    # No DOCKER_BUILDKIT: the classic builder (v28 warns the legacy builder is deprecated).
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    out = await ok(manager.tcp, "build", "-q", "-t", tag, "--build-arg",
                   "constraint:node==node-1", ctx, cli=cli)
    assert out.strip().startswith("sha256:")
    assert (await node_image_ids(sandbox3, tag))["node-1"]
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    await ok(manager.tcp, "build", "-q", "-t", tag, ctx, cli=cli)
    # BuildKit asked for explicitly fails at once, with a message, never a hang.
    monkeypatch.setenv("DOCKER_BUILDKIT", "1")
    res = await run_docker(manager.tcp, "build", "-t", tag + "-bk", ctx, cli=cli, timeout=60)
    assert res.returncode != 0
    assert res.stderr.strip()


async def test_build_bad_input(manager: Manager) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(manager.url + "/v1.41/build", data=b"this is not a tar") as r:
            assert r.status == 400
            assert "not a tar" in (await r.json())["message"]
        async with session.post(manager.url + "/v1.41/build", data=b"") as r:
            assert r.status == 400
        # Compressed, but not a tar inside: the engine's 500 is the client's 400.
        async with session.post(
            manager.url + "/v1.41/build", data=gzip.compress(b"not a tar " * 100)
        ) as r:
            assert r.status == 400
            assert (await r.json())["message"]
        async with session.post(manager.url + "/v1.41/build?version=2", data=b"") as r:
            assert r.status == 501
            assert "BuildKit" in (await r.json())["message"]
        async with session.post(manager.url + "/session") as r:
            assert r.status == 501
        async with session.post(manager.url + "/v1.41/build/cancel") as r:
            assert r.status == 400
    ctx = make_context("nowhere")
    res = await run_docker(manager.tcp, "build", "--build-arg", "constraint:node==nowhere", ctx)
    assert res.returncode != 0
    assert "Unable to find a node that satisfies" in res.stderr


async def test_docker_py_build_and_load(manager: Manager, sandbox3: Sandbox) -> None:
    ctx = make_context("dockerpy")

    def build_and_load() -> tuple[str, list[str]]:
        client = docker.DockerClient(base_url=manager.tcp)
        try:
            image, _ = client.images.build(
                path=ctx, tag="shoal-dockerpy:1", buildargs={"constraint:node": "=node-0"}
            )
            data = b"".join(client.api.get_image("busybox:latest"))
            loaded = client.images.load(data)
            return str(image.id), [t for i in loaded for t in i.tags]
        finally:
            client.close()

    image_id, loaded_tags = await asyncio.to_thread(build_and_load)
    ids = await node_image_ids(sandbox3, "shoal-dockerpy:1")
    assert ids == {"node-0": image_id, "node-1": "", "node-2": ""}
    assert loaded_tags == ["busybox:latest"]


async def test_pull_everywhere_and_on_one_node(manager: Manager) -> None:
    out = await ok(manager.tcp, "pull", "busybox")
    for name in ("node-0", "node-1", "node-2"):
        assert f"{name}: Pulling busybox:latest..." in out
    out = await ok(manager.tcp, "pull", "node-1/busybox")
    assert "node-1: Pulling" in out and "node-0" not in out and "node-2" not in out
    res = await run_docker(manager.tcp, "pull", "shoal-no-such-image")
    assert res.returncode != 0
    assert res.stderr.strip()


async def test_save_load_and_empty_load(manager: Manager, sandbox3: Sandbox) -> None:
    workdir = tempfile.mkdtemp(prefix="shoal-load-")
    archive = os.path.join(workdir, "bb.tar")
    await ok(manager.tcp, "tag", "busybox", "shoal-loadme:1")
    await ok(manager.tcp, "save", "-o", archive, "shoal-loadme:1")
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    await ok(manager.tcp, "rmi", "shoal-loadme:1")
    assert not any((await node_image_ids(sandbox3, "shoal-loadme:1")).values())
    out = await ok(manager.tcp, "load", "-i", archive)
    assert out.count("Loaded image: shoal-loadme:1") == 1
    assert all((await node_image_ids(sandbox3, "shoal-loadme:1")).values())
    empty = os.path.join(workdir, "empty.tar")
    write_file(empty, b"")
    res = await run_docker(manager.tcp, "load", "-i", empty)
    assert res.returncode == 1
    res = await run_docker(manager.tcp, "save", "-o", archive, "shoal-never-was")
    assert res.returncode != 0 and "shoal-never-was" in res.stderr


async def test_import_to_every_node(manager: Manager, sandbox3: Sandbox) -> None:
    workdir = tempfile.mkdtemp(prefix="shoal-import-")
    root = Path(workdir, "root")
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hi").write_text("hi\n")
    archive = os.path.join(workdir, "rootfs.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    out = await ok(manager.tcp, "import", archive, "shoal-imported:v1")
    # As from one engine: the image ID alone (clients read it as such), the one shoal finds.
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", out.strip()), out
    shown = await ok(manager.tcp, "image", "inspect", "-f", "{{.Id}}", "shoal-imported:v1")
    assert shown.strip() == out.strip()
    assert all((await node_image_ids(sandbox3, "shoal-imported:v1")).values())


async def test_tag_inspect_history_rmi_and_404s(manager: Manager, sandbox3: Sandbox) -> None:
    await ok(manager.tcp, "tag", "busybox", "shoal-tagged:x")
    assert all((await node_image_ids(sandbox3, "shoal-tagged:x")).values())
    listing = await ok(manager.tcp, "images", "--format", "{{.Repository}}:{{.Tag}}")
    # One row per image ID: busybox is on three nodes but listed once.
    assert listing.split().count("busybox:latest") == 1
    history = await ok(manager.tcp, "history", "-q", "shoal-tagged:x")
    assert history.strip()
    out = await ok(manager.tcp, "rmi", "shoal-tagged:x")
    assert out.strip() == "Untagged: shoal-tagged:x"
    assert not any((await node_image_ids(sandbox3, "shoal-tagged:x")).values())
    for args in (("image", "inspect", "nosuch-img"), ("rmi", "nosuch-img"),
                 ("history", "nosuch-img"), ("tag", "nosuch-img", "x:y")):
        res = await run_docker(manager.tcp, *args)
        assert res.returncode != 0
        assert "No such image: nosuch-img" in res.stderr, (args, res.stderr)
    async with aiohttp.ClientSession() as session:
        async with session.get(manager.url + "/v1.41/images/nosuch-img/json") as r:
            assert r.status == 404
            assert (await r.json())["message"] == "No such image: nosuch-img"


async def test_rmi_force_across_nodes(manager: Manager, sandbox3: Sandbox) -> None:
    ctx = make_context("forced")
    await ok(manager.tcp, "build", "-q", "-t", "shoal-forced:1", "--build-arg",
             "constraint:node==node-0", ctx)
    await ok(manager.tcp, "run", "-d", "--name", "uses-forced", "shoal-forced:1", "sleep", "60")
    res = await run_docker(manager.tcp, "rmi", "shoal-forced:1")
    assert res.returncode != 0 and "conflict" in res.stderr.lower(), res.stderr
    await ok(manager.tcp, "rmi", "-f", "shoal-forced:1")
    assert not any((await node_image_ids(sandbox3, "shoal-forced:1")).values())
    await ok(manager.tcp, "rm", "-f", "uses-forced")


async def test_build_on_a_local_network_runs_on_its_node(
    manager: Manager, sandbox3: Sandbox
) -> None:
    """`--network` naming a local network: only its node can attach the build's steps (one
    network per node, so no single placement can pass by chance)."""
    ctx = make_context("netmode")
    for node in ("node-0", "node-1", "node-2"):
        net, tag = f"buildnet-{node}", f"shoal-netmode:{node}"
        await ok(manager.tcp, "network", "create", f"{node}/{net}")
        await ok(manager.tcp, "build", "-q", "--network", net, "-t", tag, ctx)
        ids = await node_image_ids(sandbox3, tag)
        assert [n for n, i in ids.items() if i] == [node], ids
        await ok(manager.tcp, "rmi", tag)
        await ok(manager.tcp, "network", "rm", net)


async def test_push_from_the_holder(manager: Manager, sandbox3: Sandbox) -> None:
    assert sandbox3.registry is not None
    ref = f"{sandbox3.registry.address}/shoal-pushed:v1"
    ctx = make_context("pushed")
    await ok(manager.tcp, "build", "-q", "-t", ref, "--build-arg", "constraint:node==node-1", ctx)
    out = await ok(manager.tcp, "push", ref)
    assert "digest: sha256:" in out
    await ok(manager.tcp, "rmi", ref)
    await ok(manager.tcp, "pull", ref)
    assert all((await node_image_ids(sandbox3, ref)).values())
    res = await run_docker(manager.tcp, "push", f"{sandbox3.registry.address}/shoal-absent:v1")
    assert res.returncode != 0 and "No such image" in res.stderr


async def test_search_answers_cleanly(manager: Manager) -> None:
    # No registry with a search API is reachable: a clean error, no hang, no crash.
    res = await run_docker(manager.tcp, "search", "busybox", timeout=60)
    assert res.returncode != 0
    assert "Error response from daemon" in res.stderr


async def test_image_prune_and_system_df(manager: Manager, sandbox3: Sandbox) -> None:
    ctx = make_context("dangling")
    dangling: list[str] = []
    for node in ("node-0", "node-1"):
        dockerfile = DOCKERFILE.format(label=f"dangling-{node}") + f"LABEL shoal.prune={node}\n"
        write_file(os.path.join(ctx, "Dockerfile"), dockerfile.encode())
        out = await ok(manager.tcp, "build", "-q", "--build-arg", f"constraint:node=={node}", ctx)
        dangling.append(out.strip())
    out = await ok(manager.tcp, "image", "prune", "-f")
    for image_id in dangling:
        assert image_id in out
    for node in sandbox3.nodes:
        res = await run_docker(node.docker_host, "image", "inspect", *dangling)
        assert res.returncode != 0

    async with aiohttp.ClientSession() as session:
        async with session.get(manager.url + "/v1.41/system/df") as r:
            assert r.status == 200
            df = await r.json()
        layers = 0
        for node in sandbox3.nodes:
            async with session.get(f"http://{node.addr}/v1.41/system/df") as r:
                layers += (await r.json())["LayersSize"]
    assert df["LayersSize"] == layers
    ids = [i["Id"] for i in df["Images"]]
    assert len(ids) == len(set(ids))
    out = await ok(manager.tcp, "system", "df")
    assert "Images" in out and "Containers" in out


async def test_images_filters(manager: Manager) -> None:
    out = await ok(manager.tcp, "images", "--filter", "node=node-2", "--format",
                   "{{.Repository}}:{{.Tag}}")
    assert "shoal-built:n2" in out.split()
    out = await ok(manager.tcp, "images", "--filter", "node=node-0", "--format",
                   "{{.Repository}}:{{.Tag}}")
    assert "shoal-built:n2" not in out.split()
    out = await ok(manager.tcp, "images", "--filter", "reference=shoal-built", "-q")
    assert len(out.split()) == 1
    res = await run_docker(manager.tcp, "images", "--filter", "bogus=1")
    assert res.returncode != 0 and "invalid filter" in res.stderr.lower()
    res = await run_docker(manager.tcp, "images", "--filter", "before=shoal-never-was")
    assert res.returncode != 0 and "no such image" in res.stderr.lower()

    async def listed() -> bool:
        async with aiohttp.ClientSession() as session, session.get(
            manager.url + "/images/json", params={"filters": json.dumps({"dangling": ["x"]})}
        ) as r:
            return r.status == 400

    await wait_until(listed, 10, "a 400 for dangling=x")
