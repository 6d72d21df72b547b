"""Adoption and refresh of an engine's containers, over a fake engine (no dockerd).

An engine is Healthy once its list is in; full inspects follow under one cluster-wide
bound; a refresh where nothing changed is one list call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import pytest_asyncio

from shoal.cluster.client import EngineClient, decode_body
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.engine_cache import (
    InspectQueue,
    ListedContainer,
    listed_container,
    primary_name,
)
from shoal.cluster.events import EventBus
from shoal.cluster.passthrough import RawPool
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine


def inspect_doc(n: int, state: str = "running") -> dict[str, Any]:
    cid = f"{n:064x}"
    return {
        "Id": cid,
        "Name": f"/c{n}",
        "Created": "2026-01-02T03:04:05.123456789Z",
        "Image": "sha256:" + "ab" * 32,
        "Path": "sh",
        "Args": ["-c", "sleep 1d"],
        "State": {"Status": state, "Running": state == "running",
                  "StartedAt": "2026-01-02T03:04:06Z", "ExitCode": 0},
        "Config": {"Image": "busybox", "Labels": {"n": str(n)}, "Env": ["A=1"]},
        "HostConfig": {"NetworkMode": "default", "Memory": 16 << 20, "CpuShares": 512},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        "Mounts": [],
    }


def list_entry(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": doc["Id"], "Names": [doc["Name"]], "Image": doc["Config"]["Image"],
        "ImageID": doc["Image"], "Command": "sh -c 'sleep 1d'", "Created": 1767323045,
        "Ports": [], "Labels": doc["Config"]["Labels"], "State": doc["State"]["Status"],
        "Status": "Up 2 hours", "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": doc["NetworkSettings"]["Networks"]}, "Mounts": [],
    }


class FakeEngineClient:
    """Just enough of EngineClient: GETs answered from dicts, inspects held at a gate."""

    def __init__(self, name: str, docs: list[dict[str, Any]], probe: Probe) -> None:
        self.name = name
        self.docs = {d["Id"]: d for d in docs}
        self.probe = probe
        self.gets: list[str] = []
        self.raw = RawPool(cast(EngineClient, self))

    def set_api_version(self, version: str) -> None:
        pass

    async def close(self) -> None:
        pass

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.get(path)

    async def get(self, path: str, params: Mapping[str, str] | None = None, **_: Any) -> Any:
        self.gets.append(path)
        if path == "/version":
            return {"ApiVersion": "1.41", "Version": "20.10.0"}
        if path == "/info":
            return {"ID": f"ID-{self.name}", "Name": self.name, "NCPU": 2, "MemTotal": 2**32}
        if path == "/containers/json":
            return [list_entry(d) for d in self.docs.values()]
        if path.startswith("/containers/"):
            async with self.probe:
                await self.probe.gate.wait()
            return dict(self.docs[path.split("/")[2]])
        if path in ("/images/json", "/networks"):
            return []
        if path == "/volumes":
            return {"Volumes": []}
        if path == "/_ping":
            return "OK"
        raise AssertionError(f"unexpected GET {path}")


class Probe:
    """Counts inspects in flight across every fake engine; `gate` holds them."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.now = 0
        self.peak = 0

    async def __aenter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    async def __aexit__(self, *exc: object) -> None:
        self.now -= 1


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(EngineSettings(), Scheduler(), EventBus())
    try:
        yield c
    finally:
        await asyncio.gather(*(e.stop() for e in c.all_engines()))


def add(cluster: Cluster, name: str, docs: list[dict[str, Any]], probe: Probe) -> Engine:
    entry = f"127.0.0.1:{2375 + len(cluster.all_engines())}"
    client = FakeEngineClient(name, docs, probe)
    return adopt_engine(cluster, entry, None, client=client, state=EngineState.PENDING,
                        inspect_slots=cluster._inspect_slots)


def fake(engine: Engine) -> FakeEngineClient:
    return cast(FakeEngineClient, engine.client)


async def test_healthy_once_the_list_is_in_before_any_inspect(cluster: Cluster) -> None:
    probe = Probe()
    docs = [inspect_doc(i, "running" if i % 2 else "exited") for i in range(5)]
    engine = add(cluster, "node-0", docs, probe)
    await engine._validate()
    assert engine.state is EngineState.HEALTHY
    assert len(engine.containers) == 5 and engine.listed == set(engine.containers)
    # Served from the list entries meanwhile: names, states and the ps entry.
    placed = cluster.find_container("c3")
    assert isinstance(placed.container, ListedContainer)
    assert placed.container.status == "running" and placed.container.running
    assert placed.container.labels == {"n": "3"}
    assert placed.container.summary(0) == list_entry(docs[3])
    probe.gate.set()
    await engine.inspects_done()
    assert not engine.listed
    assert all(not isinstance(c, ListedContainer) for c in engine.containers.values())
    assert cluster.find_container("c3").container.inspect == docs[3]


async def test_inspect_on_demand_gets_the_full_document(cluster: Cluster) -> None:
    probe = Probe()
    docs = [inspect_doc(i) for i in range(3)]
    engine = add(cluster, "node-0", docs, probe)
    await engine._validate()
    listed = cluster.find_container("c1").container
    probe.gate.set()
    full = await engine.inspected(listed)
    assert full.inspect == docs[1] and full.reserved_memory == 16 << 20


async def test_background_inspects_are_bounded_cluster_wide(cluster: Cluster) -> None:
    cluster._inspect_slots = InspectQueue(3)
    probe = Probe()
    engines = [
        add(cluster, f"node-{e}", [inspect_doc(e * 100 + i) for i in range(6)], probe)
        for e in range(5)
    ]
    for engine in engines:
        await engine._validate()
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.now == 3  # five engines want inspects; three at a time in the cluster
    probe.gate.set()
    await cluster.inspects_done()
    assert probe.peak == 3
    assert all(not e.listed for e in engines)
    assert sum(len(e.containers) for e in engines) == 30


async def test_refresh_where_nothing_changed_is_one_list_call(cluster: Cluster) -> None:
    probe = Probe()
    probe.gate.set()
    docs = [inspect_doc(i) for i in range(4)]
    engine = add(cluster, "node-0", docs, probe)
    await engine._validate()
    await engine.inspects_done()
    fake(engine).gets.clear()
    await engine.refresh_containers()
    assert fake(engine).gets == ["/containers/json"]
    # A state change is inspected again; a container gone is dropped; a new one is listed.
    docs[0]["State"] = {"Status": "exited", "Running": False}
    gone = docs[1]["Id"]
    del fake(engine).docs[gone]
    new = inspect_doc(9)
    fake(engine).docs[new["Id"]] = new
    fake(engine).gets.clear()
    await engine.refresh_containers()
    assert fake(engine).gets[0] == "/containers/json"
    assert f"/containers/{docs[0]['Id']}/json" in fake(engine).gets
    assert gone not in engine.containers
    assert engine.containers[docs[0]["Id"]].status == "exited"
    await engine.inspects_done()
    assert engine.containers[new["Id"]].inspect == new


async def test_probe_rounds_between_reconciliations(cluster: Cluster) -> None:
    probe = Probe()
    probe.gate.set()
    engine = add(cluster, "node-0", [inspect_doc(1)], probe)
    await engine._validate()
    fake(engine).gets.clear()
    await engine.refresh_once(reconcile=False)
    assert fake(engine).gets == []  # the probe loop checks health between reconciliations
    assert await engine.probe()
    assert fake(engine).gets == ["/_ping"]
    fake(engine).gets.clear()
    await engine.refresh_once(reconcile=True)
    assert fake(engine).gets == ["/containers/json", "/images/json", "/networks", "/volumes"]


def test_list_entry_in_inspect_shape() -> None:
    doc = inspect_doc(7, "paused")
    entry = list_entry(doc) | {"Names": ["/web/db7", "/c7"]}
    c = listed_container(entry, 2)
    assert c.id == doc["Id"] and c.name == "/c7" and c.status == "paused"
    assert c.running and c.state["Paused"]
    assert c.created == 1767323045.0 and c.image == "busybox"
    assert primary_name([]) == ""


def test_decode_body() -> None:
    assert decode_body(b"OK") == "OK"
    assert decode_body(b"") is None
    assert decode_body(b'{"a": [1, 2]}\n') == {"a": [1, 2]}
    assert decode_body(b'[{"Id": "x"}]') == [{"Id": "x"}]
    # Go's widest integers (uint64, int64) come back exact.
    assert decode_body(b'{"u": 18446744073709551615, "i": -9223372036854775808}') == {
        "u": 2**64 - 1, "i": -(2**63)
    }
    assert decode_body(b"{not json") == "{not json"


async def test_inspects_wait_while_an_engine_is_being_adopted() -> None:
    queue = InspectQueue(2)
    queue.adoption_started()
    entered = asyncio.Event()

    async def inspect() -> None:
        async with queue:
            entered.set()

    task = asyncio.create_task(inspect())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not entered.is_set()
    queue.adoption_ended()
    await asyncio.wait_for(task, 1)
    assert entered.is_set()


async def test_a_daemon_id_seen_twice_is_refused(cluster: Cluster) -> None:
    probe = Probe()
    probe.gate.set()
    first = add(cluster, "node-0", [], probe)
    await first._validate()
    twin = add(cluster, "node-0", [], probe)  # same daemon ID, another address
    try:
        await twin._validate()
    except ValueError as exc:
        assert "ID duplicated" in str(exc)
    else:
        raise AssertionError("a second engine with the same daemon ID was accepted")
    assert twin.state is EngineState.PENDING
    # Once the first is gone, the ID is free again.
    await cluster.remove_engine(first.address.entry)
    await twin._validate()
    assert twin.state is EngineState.HEALTHY
