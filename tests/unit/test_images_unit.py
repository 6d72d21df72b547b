"""Pure logic of the image, build and container-list routes: merges, filters, checks."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import pytest

from shoal.api.http import HTTPError, make_request
from shoal.api.primary.build import engine_target, is_build_context
from shoal.api.primary.container_create import image_retry_affinity
from shoal.api.primary.container_list import (
    ancestor_ids,
    public_bindings,
    public_ports,
    validate_list_filters,
)
from shoal.api.primary.fanout import merge_prune
from shoal.api.primary.image_list import merged_images
from shoal.api.primary.image_streams import Fanout, final_error
from shoal.api.primary.images import familiar_name, split_node_prefix
from shoal.api.primary.system import merge_df
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineError, ImagePullFailed
from shoal.cluster.records import Image, ImageIndex


@dataclass
class FakeEngine:
    name: str
    images: list[Image] = field(default_factory=list)
    ip: str = "10.0.0.1"
    healthy: bool = True

    @property
    def id(self) -> str:
        return f"ID-{self.name}"

    @property
    def image_index(self) -> ImageIndex:
        return ImageIndex(self.images)


@dataclass
class FakeCluster:
    engines: list[FakeEngine]

    def active_engines(self) -> list[FakeEngine]:
        return self.engines

    def healthy_engines(self) -> list[FakeEngine]:
        return [e for e in self.engines if e.healthy]

    def engine_by_name(self, name: str) -> FakeEngine | None:
        return next((e for e in self.engines if e.name == name), None)


def image(iid: str, tags: list[str], created: int = 1, **extra: Any) -> Image:
    return Image({"Id": iid, "RepoTags": tags, "RepoDigests": [], "Created": created,
                  "Containers": 1, **extra})


def as_cluster(cluster: FakeCluster) -> Cluster:
    return cast(Cluster, cluster)


def two_nodes() -> FakeCluster:
    return FakeCluster(
        [
            FakeEngine("node-0", [image("sha256:aaa", ["busybox:latest"], 5),
                                  image("sha256:bbb", ["mine:1"], 9, ParentId="sha256:aaa")]),
            FakeEngine("node-1", [image("sha256:aaa", ["busybox:latest", "bb:2"], 5),
                                  image("sha256:ccc", [], 7)]),
        ]
    )


def test_images_merge_by_id_across_nodes() -> None:
    out = merged_images(as_cluster(two_nodes()), False, {})
    assert [i["Id"] for i in out] == ["sha256:bbb", "sha256:aaa"]
    busybox = out[1]
    assert busybox["RepoTags"] == ["busybox:latest", "bb:2"]
    assert busybox["Containers"] == 2


def test_images_all_shows_untagged_and_node_filter() -> None:
    out = merged_images(as_cluster(two_nodes()), True, {})
    assert [i["Id"] for i in out] == ["sha256:bbb", "sha256:ccc", "sha256:aaa"]
    assert out[1]["RepoTags"] == ["<none>:<none>"]
    out = merged_images(as_cluster(two_nodes()), False, {"node": ["node-1"]})
    assert [i["Id"] for i in out] == ["sha256:aaa"]


def test_images_before_since_and_bad_filters() -> None:
    cluster = as_cluster(two_nodes())
    assert [i["Id"] for i in merged_images(cluster, False, {"before": ["mine:1"]})] == [
        "sha256:aaa"
    ]
    assert [i["Id"] for i in merged_images(cluster, False, {"since": ["busybox"]})] == [
        "sha256:bbb"
    ]
    with pytest.raises(HTTPError) as err:
        merged_images(cluster, False, {"before": ["nope"]})
    assert err.value.status == 400 and "no such image found: 'nope'" in err.value.message
    with pytest.raises(HTTPError) as err:
        merged_images(cluster, False, {"bogus": ["1"]})
    assert err.value.status == 400
    with pytest.raises(HTTPError):
        merged_images(cluster, False, {"dangling": ["maybe"]})


def test_merge_prune_joins_and_sums() -> None:
    e0, e1 = cast(Engine, FakeEngine("node-0")), cast(Engine, FakeEngine("node-1"))
    merged = merge_prune(
        [(e0, {"ImagesDeleted": [{"Deleted": "a"}], "SpaceReclaimed": 10}),
         (e1, {"ImagesDeleted": None, "SpaceReclaimed": 5})],
        "ImagesDeleted",
    )
    assert merged == {"ImagesDeleted": [{"Deleted": "a"}], "SpaceReclaimed": 15}
    assert merge_prune([(e0, {"SpaceReclaimed": 0})], "ContainersDeleted") == {
        "ContainersDeleted": None,
        "SpaceReclaimed": 0,
    }


def test_merge_df_names_objects_by_node() -> None:
    e0, e1 = cast(Engine, FakeEngine("node-0")), cast(Engine, FakeEngine("node-1"))
    df = merge_df(
        [
            (e0, {"LayersSize": 100, "Images": [{"Id": "x", "RepoTags": ["a:1"], "Containers": 1}],
                  "Containers": [{"Id": "c0", "Names": ["/web"]}],
                  "Volumes": [{"Name": "v", "Driver": "local"}], "BuildCache": []}),
            (e1, {"LayersSize": 50, "Images": [{"Id": "x", "RepoTags": ["b:2"], "Containers": 2}],
                  "Containers": [], "Volumes": [{"Name": "shared", "Driver": "nfs"}],
                  "BuildCache": None}),
        ]
    )
    assert df["LayersSize"] == 150
    assert df["Images"] == [{"Id": "x", "RepoTags": ["a:1", "b:2"], "Containers": 3,
                             "RepoDigests": []}]
    assert df["Containers"][0]["Names"] == ["/node-0/web"]
    assert [v["Name"] for v in df["Volumes"]] == ["node-0/v", "shared"]


def test_split_node_prefix_and_familiar_names() -> None:
    cluster = as_cluster(two_nodes())
    engine, rest = split_node_prefix(cluster, "docker.io/node-1/busybox")
    assert engine is not None and engine.name == "node-1" and rest == "busybox"
    engine, rest = split_node_prefix(cluster, "node-0/library/busybox")
    assert engine is not None and engine.name == "node-0" and rest == "library/busybox"
    assert split_node_prefix(cluster, "docker.io/library/busybox") == (
        None, "docker.io/library/busybox"
    )
    assert familiar_name("docker.io/library/busybox") == "busybox"
    assert familiar_name("docker.io/user/app") == "user/app"
    assert familiar_name("10.0.0.1:5000/app") == "10.0.0.1:5000/app"


def test_final_error_skips_os_mismatch_only_when_something_worked() -> None:
    assert final_error([], 3) == b""
    mismatch = ["node-1: image operating system \"windows\" cannot be used on this platform"]
    assert final_error(mismatch, 1) == b""
    obj = json.loads(final_error(mismatch, 0))
    assert obj["errorDetail"]["code"] == 1 and "windows" in obj["error"]
    assert json.loads(final_error(["node-0: boom"], 2))["error"] == "node-0: boom"


def tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        data = b"FROM busybox\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_build_context_detection(fmt: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo("dir/Dockerfile-with-ünicode")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert is_build_context(buf.getvalue())
    assert is_build_context(tar_bytes())
    assert is_build_context(b"\x1f\x8b\x08\x00rest")
    assert is_build_context(bytes(1024))
    assert not is_build_context(b"")
    assert not is_build_context(b"FROM busybox\n")
    corrupt = bytearray(tar_bytes())
    corrupt[0] ^= 0xFF
    assert not is_build_context(bytes(corrupt))


async def test_engine_target_rewrites_build_args() -> None:
    args = json.dumps({"constraint:node": "=node-2", "greeting": "yo"})
    request = make_request("POST", "/v1.41/build?t=a&t=b&buildargs=" + quote(args))
    target = engine_target(request, {"greeting": "yo"}, True)
    assert target.startswith("/v1.41/build?t=a&t=b&buildargs=")
    assert "constraint" not in target and "greeting" in target


def test_validate_list_filters() -> None:
    validate_list_filters({"name": ["x"], "node": ["node-1"], "exited": ["3"],
                           "health": ["healthy"], "status": ["exited"]})
    for bad in ({"bogus": ["1"]}, {"status": ["sleepy"]}, {"health": ["great"]},
                {"exited": ["x"]}, {"is-task": ["maybe"]}):
        with pytest.raises(HTTPError) as err:
            validate_list_filters(bad)
        assert err.value.status == 400


def test_ancestor_ids_follow_children() -> None:
    engine = cast(Engine, two_nodes().engines[0])
    assert ancestor_ids(engine, ["busybox"]) == {"sha256:aaa", "sha256:bbb"}
    assert ancestor_ids(engine, ["mine:1"]) == {"sha256:bbb"}
    assert ancestor_ids(engine, ["nothing"]) == set()


def test_wildcard_ports_shown_once_at_engine_ip() -> None:
    engine = cast(Engine, FakeEngine("node-0", ip="10.1.1.1"))
    ports = [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 3000, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 3000, "Type": "tcp"},
        {"PrivatePort": 81, "Type": "tcp"},
    ]
    assert public_ports(ports, engine) == [
        {"IP": "10.1.1.1", "PrivatePort": 80, "PublicPort": 3000, "Type": "tcp"},
        {"PrivatePort": 81, "Type": "tcp"},
    ]
    bindings = [{"HostIp": "0.0.0.0", "HostPort": "3000"}, {"HostIp": "::", "HostPort": "3000"}]
    assert public_bindings(bindings, engine) == [{"HostIp": "10.1.1.1", "HostPort": "3000"}]


def test_image_retry_affinity() -> None:
    cluster = as_cluster(two_nodes())
    config: dict[str, Any] = {"Image": "mine:1", "Labels": {}}
    missing = EngineError(404, "No such image: mine:1")
    assert image_retry_affinity(cluster, config, missing) == "image==mine:1"
    assert config["Labels"] == {}
    # Not when the image is nowhere, a hard node constraint pins it, or the error is not
    # about the image (a conflict, a missing volume plugin's 404).
    assert image_retry_affinity(cluster, {"Image": "absent"}, missing) is None
    pinned = {"Image": "mine:1",
              "Labels": {"com.docker.swarm.constraints": '["node==node-1"]'}}
    assert image_retry_affinity(cluster, pinned, missing) is None
    assert image_retry_affinity(cluster, config, EngineError(409, "Conflict")) is None
    plugin = EngineError(404, 'error looking up volume plugin x: plugin "x" not found')
    assert image_retry_affinity(cluster, config, plugin) is None
    for text in ("pull access denied for mine, repository does not exist or may require "
                 "'docker login'", "repository mine not found: does not exist",
                 "image mine:1 not found"):
        assert image_retry_affinity(cluster, config, EngineError(404, text)) == "image==mine:1"
    # The engine lacked the image and could not pull it: the pull's text, but the image missing.
    pulled = ImagePullFailed(500, "Get https://registry-1.docker.io/v2/: connection refused")
    assert image_retry_affinity(cluster, config, pulled) == "image==mine:1"


async def test_fanout_feeds_every_reader_and_drops_finished_ones() -> None:
    pieces = [bytes([i]) * 100 for i in range(40)]

    async def source() -> AsyncIterator[bytes]:
        for p in pieces:
            yield p
            await asyncio.sleep(0)

    fanout = Fanout(source(), 3)

    async def read_all(i: int) -> bytes:
        return b"".join([p async for p in fanout.reader(i)])

    async def read_one_then_quit(i: int) -> bytes:
        async for p in fanout.reader(i):
            fanout.done(i)
            return p
        return b""

    pump = asyncio.create_task(fanout.pump())
    a, b, first = await asyncio.wait_for(
        asyncio.gather(read_all(0), read_all(1), read_one_then_quit(2)), 5
    )
    await asyncio.wait_for(pump, 5)
    assert a == b == b"".join(pieces)
    assert first == pieces[0]


async def test_fanout_passes_a_client_failure_to_every_reader() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"x"
        raise ConnectionError("client went away")

    fanout = Fanout(source(), 2)
    pump = asyncio.create_task(fanout.pump())
    for i in range(2):
        with pytest.raises(ConnectionError):
            async for _ in fanout.reader(i):
                pass
    await pump
    assert fanout.error is not None
