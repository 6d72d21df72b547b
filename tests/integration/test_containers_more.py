"""Issue 4 acceptance, the rest of the container API: cp, export, diff, commit, update,
prune, port and `docker ps` filters through `shoal manage`, checked against the engines."""

from __future__ import annotations

import filecmp
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import aiohttp
import pytest

from shoal.sandbox import Sandbox
from tests.integration.conftest import DOCKER_NEW, run_docker
from tests.integration.manager import Manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


async def ok(host: str, *args: str, timeout: float = 60) -> str:
    result = await run_docker(host, *args, cli=DOCKER_NEW, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}{result.stdout}"
    return result.stdout


async def node_of(manager: Manager, name: str) -> str:
    return (await ok(manager.tcp, "inspect", "-f", "{{.Node.Name}}", name)).strip()


def assert_same_tree(a: str, b: str) -> None:
    """Names, kinds, symlink targets and bytes of every file are equal."""
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.funny_files, (a, b)
    for name in cmp.common_files:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if os.path.islink(pa) or os.path.islink(pb):
            assert os.readlink(pa) == os.readlink(pb)
        else:
            assert Path(pa).read_bytes() == Path(pb).read_bytes(), name
    for sub in cmp.common_dirs:
        assert_same_tree(os.path.join(a, sub), os.path.join(b, sub))


def make_payload(work: str) -> Path:
    """A directory with random bytes, an empty file, a symlink and nested directories."""
    src = Path(work, "payload")
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "random.bin").write_bytes(os.urandom(300_000))
    (src / "text.txt").write_text("hello shoal\n")
    (src / "empty").write_bytes(b"")
    os.symlink("text.txt", src / "link")
    return src


def read_text(path: str) -> str:
    return Path(path).read_text()


async def test_cp_directory_round_trip_is_byte_identical(manager: Manager) -> None:
    work = tempfile.mkdtemp(prefix="shoal-cp-")
    src = make_payload(work)
    await ok(manager.tcp, "run", "-d", "--name", "cp-box", "busybox", "sleep", "120")
    await ok(manager.tcp, "cp", str(src), "cp-box:/data")
    out = await ok(manager.tcp, "exec", "cp-box", "md5sum", "/data/sub/deeper/random.bin")
    assert out.split()[0] and len(out.split()[0]) == 32
    dest = os.path.join(work, "back")
    await ok(manager.tcp, "cp", "cp-box:/data", str(dest))
    assert_same_tree(str(src), dest)
    # A single file both ways, addressed as node/name.
    node = await node_of(manager, "cp-box")
    await ok(manager.tcp, "cp", str(src / "text.txt"), f"{node}/cp-box:/tmp/one.txt")
    one = os.path.join(work, "one.txt")
    await ok(manager.tcp, "cp", f"{node}/cp-box:/tmp/one.txt", one)
    assert read_text(one) == "hello shoal\n"
    res = await run_docker(manager.tcp, "cp", "cp-box:/no/such/path", work)
    assert res.returncode != 0 and "could not find the file" in res.stderr.lower()
    res = await run_docker(manager.tcp, "cp", "nosuch-box:/etc", work)
    assert res.returncode != 0 and "No such container" in res.stderr


async def test_archive_head_and_legacy_copy(manager: Manager) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.head(
            manager.url + "/v1.41/containers/cp-box/archive", params={"path": "/data"}
        ) as r:
            assert r.status == 200
            assert r.headers.get("X-Docker-Container-Path-Stat")
        async with session.post(
            manager.url + "/v1.23/containers/cp-box/copy", json={"Resource": "/data/text.txt"}
        ) as r:
            assert r.status == 200
            raw = await r.read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.extractfile("text.txt")
        assert member is not None and member.read() == b"hello shoal\n"


async def test_export_and_diff(manager: Manager) -> None:
    work = tempfile.mkdtemp(prefix="shoal-export-")
    archive = os.path.join(work, "rootfs.tar")
    await ok(manager.tcp, "export", "-o", archive, "cp-box")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"bin/busybox", "data/text.txt", "etc/passwd"} <= names
    diff = (await ok(manager.tcp, "diff", "cp-box")).splitlines()
    assert "A /data" in diff and "A /data/sub/deeper/random.bin" in diff


async def test_commit_then_run_lands_on_the_image_node(
    manager: Manager, sandbox3: Sandbox
) -> None:
    node = await node_of(manager, "cp-box")
    image_id = (
        await ok(manager.tcp, "commit", "-m", "from shoal", "-c", "LABEL committed=yes",
                 "cp-box", "shoal-committed:v1")
    ).strip()
    assert image_id.startswith("sha256:")
    for n in sandbox3.nodes:
        res = await run_docker(n.docker_host, "images", "-q", "--no-trunc", "shoal-committed:v1")
        assert (res.stdout.strip() == image_id) == (n.name == node), n.name
    label = await ok(manager.tcp, "image", "inspect", "-f", "{{.Config.Labels.committed}}",
                     "shoal-committed:v1")
    assert label.strip() == "yes"
    for i in range(3):
        await ok(manager.tcp, "run", "-d", "--name", f"from-commit-{i}", "shoal-committed:v1",
                 "sleep", "60")
        assert await node_of(manager, f"from-commit-{i}") == node
    out = await ok(manager.tcp, "exec", "from-commit-0", "cat", "/data/text.txt")
    assert out == "hello shoal\n"
    res = await run_docker(manager.tcp, "commit", "nosuch-box", "x:y")
    assert res.returncode != 0 and "No such container: nosuch-box" in res.stderr
    await ok(manager.tcp, "rm", "-f", "from-commit-0", "from-commit-1", "from-commit-2")


async def test_update_and_port(manager: Manager, sandbox3: Sandbox) -> None:
    await ok(manager.tcp, "update", "--memory", "64m", "--memory-swap", "128m", "cp-box")
    memory = await ok(manager.tcp, "inspect", "-f", "{{.HostConfig.Memory}}", "cp-box")
    assert memory.strip() == str(64 * 2**20)
    await ok(manager.tcp, "run", "-d", "--name", "ported", "-p", "8080", "busybox",
             "sleep", "60")
    node = await node_of(manager, "ported")
    engine = next(n for n in sandbox3.nodes if n.name == node)
    direct = await ok(engine.docker_host, "port", "ported", "8080/tcp")
    host_port = direct.split()[0].rsplit(":", 1)[1]
    through = (await ok(manager.tcp, "port", "ported")).splitlines()
    assert through == [f"8080/tcp -> 127.0.0.1:{host_port}"]
    res = await run_docker(manager.tcp, "update", "--memory", "64m", "nosuch-box")
    assert res.returncode != 0 and "No such container" in res.stderr
    await ok(manager.tcp, "rm", "-f", "ported")


async def test_container_prune_across_nodes(manager: Manager, sandbox3: Sandbox) -> None:
    ids = []
    for node in ("node-0", "node-1", "node-2"):
        out = await ok(manager.tcp, "run", "-d", "-e", f"constraint:node=={node}",
                       "--label", "prune-me=1", "busybox", "true")
        ids.append(out.strip())
    await ok(manager.tcp, "wait", *ids)
    out = await ok(manager.tcp, "container", "prune", "-f", "--filter", "label=prune-me=1")
    for cid in ids:
        assert cid in out
    listed = await ok(manager.tcp, "ps", "-aq", "--no-trunc", "--filter", "label=prune-me")
    assert not listed.strip()
    for node in sandbox3.nodes:
        res = await run_docker(node.docker_host, "ps", "-aq", "--filter", "label=prune-me")
        assert not res.stdout.strip()


async def ps_ids(host: str, *filters: str) -> set[str]:
    args = ["ps", "-a", "-q", "--no-trunc"]
    for f in filters:
        args += ["--filter", f]
    return set((await ok(host, *args)).split())


async def test_ps_filters_match_the_engines(manager: Manager, sandbox3: Sandbox) -> None:
    """Each filter through shoal lists exactly the union of what each engine lists."""
    specs = [
        ("node-0", ["--name", "pf-a", "--label", "pf=1", "--label", "tier=web",
                    "-v", "pfvol:/vol"], ["sleep", "120"]),
        ("node-1", ["--name", "pf-b", "--label", "pf=1", "--label", "tier=db",
                    "--health-cmd", "true", "--health-interval", "1s"], ["sleep", "120"]),
        ("node-2", ["--name", "pf-c", "--label", "pf=1"], ["sh", "-c", "exit 3"]),
    ]
    for node, opts, cmd in specs:
        await ok(manager.tcp, "run", "-d", "-e", f"constraint:node=={node}", *opts,
                 "busybox", *cmd)
    await ok(manager.tcp, "wait", "pf-c")

    async def healthy() -> bool:
        out = await ok(manager.tcp, "inspect", "-f", "{{.State.Health.Status}}", "pf-b")
        return out.strip() == "healthy"

    await wait_until(healthy, 30, "pf-b healthy")
    a_id = (await ok(manager.tcp, "inspect", "-f", "{{.Id}}", "pf-a")).strip()
    filters = [
        ["name=pf-"], ["name=^/pf-a$"], ["label=pf"], ["label=tier=db"],
        ["label=pf=1", "status=running"], ["status=exited"], ["status=created"],
        ["id=" + a_id[:10]], ["ancestor=busybox"],
        ["health=healthy"], ["health=none", "label=pf"], ["network=bridge", "label=pf"],
        ["volume=pfvol"], ["volume=/vol"], ["exited=3"], ["exited=0", "label=pf"],
    ]
    for f in filters:
        union: set[str] = set()
        for node in sandbox3.nodes:
            union |= await ps_ids(node.docker_host, *f)
        assert await ps_ids(manager.tcp, *f) == union, f
    # Classic Swarm's node filter, and the node-prefixed names `docker ps` shows.
    assert await ps_ids(manager.tcp, "node=node-1", "label=pf") == await ps_ids(
        sandbox3.nodes[1].docker_host, "label=pf"
    )
    names = (await ok(manager.tcp, "ps", "-a", "--filter", "label=pf", "--format",
                      "{{.Names}}")).split()
    assert sorted(names) == ["node-0/pf-a", "node-1/pf-b", "node-2/pf-c"]
    # Without -a only running ones; -n/--last counts across the cluster.
    running = await ok(manager.tcp, "ps", "-q", "--filter", "label=pf")
    assert len(running.split()) == 2
    last = await ok(manager.tcp, "ps", "-n", "1", "--filter", "label=pf", "--format", "{{.Names}}")
    assert last.split() == ["node-2/pf-c"]
    # before/since compare creation times across nodes.
    before = await ok(manager.tcp, "ps", "-a", "--filter", "before=pf-c", "--filter", "label=pf",
                      "--format", "{{.Names}}")
    assert sorted(before.split()) == ["node-0/pf-a", "node-1/pf-b"]
    since = await ok(manager.tcp, "ps", "-a", "--filter", "since=pf-a", "--filter", "label=pf",
                     "--format", "{{.Names}}")
    assert sorted(since.split()) == ["node-1/pf-b", "node-2/pf-c"]
    # Bad filters answer as an engine does.
    for bad in ("bogus=1", "status=sleepy", "health=great", "exited=x"):
        res = await run_docker(manager.tcp, "ps", "--filter", bad)
        assert res.returncode != 0, bad
    res = await run_docker(manager.tcp, "ps", "--filter", "before=nosuch-box")
    assert res.returncode != 0 and "No such container" in res.stderr
    async with aiohttp.ClientSession() as session:
        async with session.get(
            manager.url + "/containers/json",
            params={"filters": json.dumps({"bogus": ["1"]})},
        ) as r:
            assert r.status == 400
    await ok(manager.tcp, "rm", "-f", "-v", "pf-a", "pf-b", "pf-c")


async def test_unknown_container_404(manager: Manager) -> None:
    async with aiohttp.ClientSession() as session:
        for method, path in (
            ("GET", "/v1.41/containers/nosuch-box/json"),
            ("GET", "/v1.41/containers/nosuch-box/export"),
            ("GET", "/v1.41/containers/nosuch-box/changes"),
            ("HEAD", "/v1.41/containers/nosuch-box/archive?path=/"),
            ("POST", "/v1.41/containers/nosuch-box/update"),
            ("POST", "/v1.41/commit?container=nosuch-box"),
        ):
            async with session.request(method, manager.url + path) as r:
                assert r.status == 404, (method, path)
                if method != "HEAD":
                    assert "No such container" in (await r.json())["message"]
    await ok(manager.tcp, "rm", "-f", "cp-box")
