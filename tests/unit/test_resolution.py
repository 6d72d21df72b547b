"""Classic Swarm's container resolution (spec 3.3) on the cluster's indexes, no dockerd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings
from shoal.cluster.errors import NotFound
from shoal.cluster.events import EventBus
from shoal.cluster.prefix import SortedKeys
from shoal.cluster.records import SWARM_ID_LABEL, Container, EngineSpecs, Image, ImageIndex
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine


def container(cid: str, name: str, swarm_id: str | None = None) -> Container:
    labels = {SWARM_ID_LABEL: swarm_id} if swarm_id else {}
    return Container({"Id": cid, "Name": f"/{name}", "Config": {"Labels": labels},
                      "State": {"Status": "running", "Running": True}})


@pytest_asyncio.fixture(loop_scope="function")
async def cluster() -> AsyncIterator[tuple[Cluster, Engine, Engine]]:
    cl = Cluster(EngineSettings(), Scheduler(), EventBus())
    engines = []
    for i in range(2):
        specs = EngineSpecs(daemon_id=f"D{i}", name=f"node-{i}", cpus=2, memory=1 << 30)
        engine = adopt_engine(cl, f"127.0.0.1:{9000 + i}", specs)
        engines.append(engine)
    try:
        yield cl, engines[0], engines[1]
    finally:
        for engine in engines:
            await engine.client.close()


def put(cl: Cluster, engine: Engine, c: Container) -> None:
    engine.containers[c.id] = c
    cl.container_changed(engine, None, c)


A = "abc123" + "0" * 58
B = "abd456" + "1" * 58
S = "5ea" + "2" * 61


async def test_ids_names_and_prefixes(cluster: tuple[Cluster, Engine, Engine]) -> None:
    cl, n0, n1 = cluster
    put(cl, n0, container(A, "web", swarm_id=S))
    put(cl, n1, container(B, "db"))
    assert cl.find_container(A).container.id == A
    assert cl.find_container(A[:12]).container.id == A
    assert cl.find_container(S).container.id == A  # swarm ID
    assert cl.find_container(S[:12]).container.id == A
    assert cl.find_container("web").container.id == A
    assert cl.find_container("/db").container.id == B
    assert cl.find_container("node-1/db").engine is n1
    assert cl.find_container("abc").container.id == A  # unique prefix
    assert cl.find_container("5ea").container.id == A  # unique swarm-ID prefix
    with pytest.raises(NotFound):
        cl.find_container("ab")  # ambiguous prefix
    with pytest.raises(NotFound):
        cl.find_container("node-0/db")  # db is on node-1
    with pytest.raises(NotFound):
        cl.find_container("nothing")


async def test_names_win_over_prefixes_and_removal_unindexes(
    cluster: tuple[Cluster, Engine, Engine],
) -> None:
    cl, n0, n1 = cluster
    put(cl, n0, container(A, "abd"))  # a name that is also a prefix of B's ID
    put(cl, n1, container(B, "other"))
    assert cl.find_container("abd").container.id == A
    n1.forget_container(B)
    with pytest.raises(NotFound):
        cl.find_container("other")
    with pytest.raises(NotFound):
        cl.find_container(B[:12])
    assert cl.find_container("ab").container.id == A  # now unique


def test_sorted_keys_prefix_lookup() -> None:
    keys = SortedKeys()
    for key in ["b2", "a1", "a2", "a1", "c"]:
        keys.add(key)
    assert len(keys) == 4
    assert keys.with_prefix("a") == ["a1", "a2"]
    assert keys.with_prefix("a1") == ["a1"]
    assert keys.with_prefix("z") == []
    keys.discard("a1")
    keys.discard("missing")
    assert keys.with_prefix("a") == ["a2"]


IMAGES = [
    Image({"Id": "sha256:" + "ab" * 32, "RepoTags": ["busybox:latest", "localhost:5000/x/y:1"],
           "RepoDigests": ["busybox@sha256:" + "cd" * 32]}),
    Image({"Id": "sha256:" + "ef" * 32, "RepoTags": ["<none>:<none>"], "RepoDigests": []}),
    Image({"Id": "sha256:" + "a1" * 32, "RepoTags": ["library/app:v2"], "RepoDigests": []}),
]


@pytest.mark.parametrize("ref", [
    "busybox", "busybox:latest", "docker.io/library/busybox", "library/busybox:latest",
    "busybox:1", "localhost:5000/x/y:1", "localhost:5000/x/y", "busybox@sha256:" + "cd" * 32,
    "ab" * 5, "sha256:" + "ab" * 4, "ef" * 32, "a", "ab", "abc", "app:v2", "app", "",
    "docker.io/library/app:v2", "nope",
])
def test_image_index_agrees_with_matches(ref: str) -> None:
    index = ImageIndex(IMAGES)
    expected = [i for i in IMAGES if i.matches(ref)]
    found = index.find(ref)
    assert (found is not None) == bool(expected), ref
    if found is not None:
        assert found in expected
