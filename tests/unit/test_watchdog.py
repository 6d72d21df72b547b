"""The watchdog and the engine recovery path, over fake engines (no dockerd)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import pytest_asyncio

from shoal.cluster.client import (
    EngineClient,
    EngineConnectionError,
    EngineError,
)
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.passthrough import RawPool
from shoal.cluster.records import SWARM_ID_LABEL, Container, EngineSpecs
from shoal.cluster.watchdog import Watchdog, plain_link, recreate_config, wants_reschedule
from shoal.scheduler.labels import CONSTRAINTS_LABEL, RESCHEDULE_LABEL
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine

POLICY = '["on-node-failure"]'
_ids = itertools.count(1)


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def make_inspect(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    running: bool = True,
    env: list[str] | None = None,
    created: float = 1_700_000_000.0,
    cid: str | None = None,
) -> dict[str, Any]:
    cid = cid or f"{next(_ids):064x}"
    return {
        "Id": cid,
        "Name": f"/{name}",
        "Created": stamp(created),
        "Config": {
            "Hostname": cid[:12],
            "Image": "busybox",
            "Cmd": ["sleep", "600"],
            "Env": list(env or ["PATH=/bin"]),
            "Labels": dict(labels or {}),
        },
        "HostConfig": {"NetworkMode": "default", "CpuShares": 0},
        "State": {"Status": "running" if running else "exited", "Running": running},
        "NetworkSettings": {"Networks": {"bridge": {"Aliases": None, "IPAddress": "172.17.0.2"}}},
    }


class FakeClient:
    """Just enough of EngineClient: containers kept in a dict, calls recorded."""

    def __init__(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.labels = dict(labels or {})
        self.down = False
        self.containers: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.create_gate: asyncio.Event | None = None
        self.raw = RawPool(cast(EngineClient, self))

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, **_: Any
    ) -> Any:
        return await self.call("GET", path, params=params)

    def set_api_version(self, version: str) -> None:
        pass

    async def close(self) -> None:
        pass

    async def call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: Any = None, **_: Any,
    ) -> Any:
        self.calls.append((method, path))
        if self.down:
            raise EngineConnectionError("connection refused")
        if path == "/version":
            return {"ApiVersion": "1.41", "Version": "20.10.0"}
        if path == "/info":
            return {
                "ID": f"ID-{self.name}", "Name": self.name, "NCPU": 2, "MemTotal": 2**32,
                "OSType": "linux", "Labels": [f"{k}={v}" for k, v in self.labels.items()],
            }
        if path == "/containers/json":
            return [
                {"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"],
                 "State": c["State"]["Status"],
                 "Created": int(datetime.fromisoformat(c["Created"]).timestamp())}
                for c in self.containers.values()
            ]
        if path == "/containers/create":
            if self.create_gate is not None:
                await self.create_gate.wait()
            created = make_inspect(
                (params or {})["name"], body.get("Labels"), running=False,
                created=1_800_000_000.0,
            )
            created["Config"].update({k: v for k, v in body.items() if k[0].isupper()})
            created["HostConfig"] = body.get("HostConfig") or {}
            self.containers[created["Id"]] = created
            return {"Id": created["Id"]}
        if path.startswith("/containers/"):
            cid = path.split("/")[2]
            if cid not in self.containers:
                raise EngineError(404, f"No such container: {cid}")
            if method == "DELETE":
                del self.containers[cid]
                return None
            if path.endswith("/start"):
                self.containers[cid]["State"] = {"Status": "running", "Running": True}
                return None
            return self.containers[cid]
        if path in ("/images/json", "/networks"):
            return []
        if path == "/volumes":
            return {"Volumes": []}
        raise AssertionError(f"unexpected call {method} {path}")


def add_engine(cluster: Cluster, name: str, labels: Mapping[str, str] | None = None) -> Engine:
    entry = f"127.0.0.1:{2375 + len(cluster.all_engines())}"
    specs = EngineSpecs(
        daemon_id=f"ID-{name}", name=name, cpus=2, memory=2**32, labels=dict(labels or {})
    )
    return adopt_engine(cluster, entry, specs, client=FakeClient(name, labels))


def put(engine: Engine, inspect: dict[str, Any]) -> Container:
    fake(engine).containers[inspect["Id"]] = inspect
    container = Container(inspect, engine_cpus=2)
    engine.restore_container(container)
    return container


def fail(engine: Engine) -> None:
    """The node dies: enough failed calls to flag it unhealthy."""
    fake(engine).down = True
    for _ in range(engine.settings.failure_retry):
        engine.record_failure("connection refused")


def fake(engine: Engine) -> FakeClient:
    return cast(FakeClient, engine.client)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(EngineSettings(failure_retry=2), Scheduler(), EventBus())
    try:
        yield c
    finally:
        await asyncio.gather(*(e.stop() for e in c.all_engines()))


@pytest_asyncio.fixture
async def watchdog(cluster: Cluster) -> AsyncIterator[Watchdog]:
    w = Watchdog(cluster, retry_delays=(0.01, 0.01))
    w.start()
    try:
        yield w
    finally:
        await w.stop()


def names_listed(cluster: Cluster) -> list[str]:
    return sorted(p.container.name for p in cluster.containers())


# -- pure helpers ------------------------------------------------------------------------
def test_policy_from_label_or_env() -> None:
    assert wants_reschedule(Container(make_inspect("a", {RESCHEDULE_LABEL: POLICY})))
    assert wants_reschedule(Container(make_inspect("b", env=["reschedule:on-node-failure"])))
    assert not wants_reschedule(Container(make_inspect("c")))
    assert not wants_reschedule(Container(make_inspect("d", {RESCHEDULE_LABEL: '["off"]'})))


def test_recreate_config_keeps_identity_drops_node_specifics() -> None:
    inspect = make_inspect("web", {SWARM_ID_LABEL: "s1", CONSTRAINTS_LABEL: '["node==~n1"]'},
                           env=["PATH=/bin", "affinity:image==busybox"])
    inspect["HostConfig"].update({"CpuShares": 1024, "Links": ["/db:/web/db"]})
    inspect["NetworkSettings"]["Networks"]["appnet"] = {
        "Aliases": ["web", inspect["Id"][:12]], "IPAddress": "10.0.0.2"
    }
    config, later = recreate_config(Container(inspect, engine_cpus=2))
    assert "Hostname" not in config
    assert config["Labels"][SWARM_ID_LABEL] == "s1"
    assert config["Labels"][CONSTRAINTS_LABEL] == '["node==~n1"]'
    assert config["Labels"]["com.docker.swarm.affinities"] == '["image==busybox"]'
    assert config["Env"] == ["PATH=/bin"]
    assert config["HostConfig"]["CpuShares"] == 2  # shares back to a CPU count
    assert config["HostConfig"]["Links"] == ["db:db"]
    assert config["NetworkingConfig"] == {"EndpointsConfig": {"bridge": {}}}
    assert later == {"appnet": {"Aliases": ["web"]}}


def test_plain_link() -> None:
    assert plain_link("/db:/web/alias") == "db:alias"
    assert plain_link("db") == "db"


# -- the watchdog --------------------------------------------------------------------------
async def test_failed_node_moves_policy_containers_once(
    cluster: Cluster, watchdog: Watchdog
) -> None:
    n0, n1, n2 = (add_engine(cluster, f"node-{i}") for i in range(3))
    soft = {CONSTRAINTS_LABEL: '["node==~node-1"]'}
    moving = put(n1, make_inspect("a", {**soft, RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sa"}))
    stopped = put(n1, make_inspect("b", {**soft, RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sb"},
                                   running=False))
    staying = put(n1, make_inspect("c", {**soft, SWARM_ID_LABEL: "sc"}))
    fail(n1)
    assert n1.state is EngineState.UNHEALTHY
    await watchdog.settle()

    placed = cluster.find_container("a")
    assert placed.engine in (n0, n2)
    assert placed.container.id != moving.id
    assert placed.container.swarm_id == "sa"
    assert placed.container.running
    b = cluster.find_container("b")
    assert b.engine is not n1 and not b.container.running  # not started: it was not running
    assert set(n1.containers) == {staying.id}
    assert stopped.id not in n1.containers
    assert names_listed(cluster) == ["/a", "/b", "/c"]
    moves = [e for e in cluster.bus.history if e.get("Action") == "container_reschedule"]
    assert [e["Actor"]["Attributes"]["old_id"] for e in moves] == [moving.id, stopped.id]
    assert moves[0]["Actor"]["ID"] == placed.container.id
    # A second disconnect of the same node reschedules nothing again.
    n1.state = EngineState.HEALTHY
    fail(n1)
    await watchdog.settle()
    creates = sum(1 for e in (n0, n2) for c in fake(e).calls if c[1] == "/containers/create")
    assert creates == 2


async def test_hard_constraint_keeps_container_and_says_why(
    cluster: Cluster, watchdog: Watchdog, caplog: pytest.LogCaptureFixture
) -> None:
    add_engine(cluster, "node-0", {"storage": "ssd"})
    n1 = add_engine(cluster, "node-1", {"storage": "disk"})
    pinned = put(n1, make_inspect("p", {CONSTRAINTS_LABEL: '["storage==disk"]',
                                        RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sp"}))
    caplog.set_level(logging.INFO, "shoal.cluster.watchdog")
    fail(n1)
    await watchdog.settle()
    failures = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith(f"Failed to reschedule container {pinned.id}")]
    assert len(failures) == 3  # first try and the two bounded retries
    assert "storage==disk" in failures[0]
    assert any("Giving up" in r.getMessage() for r in caplog.records)
    assert cluster.find_container("p").container.id == pinned.id  # back in the cache
    assert n1.containers[pinned.id] is pinned


async def test_retry_succeeds_once_a_node_fits(cluster: Cluster) -> None:
    watchdog = Watchdog(cluster, retry_delays=(0.02,) * 500)
    watchdog.start()
    try:
        n0 = add_engine(cluster, "node-0")
        n0.state = EngineState.UNHEALTHY  # nowhere to go at first
        n1 = add_engine(cluster, "node-1")
        put(n1, make_inspect("a", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sa"}))
        fail(n1)
        await asyncio.sleep(0.1)
        assert cluster.find_container("a").engine is n1  # retried, restored meanwhile
        n0.state = EngineState.HEALTHY
        await asyncio.wait_for(watchdog.settle(), 5)
        assert cluster.find_container("a").engine is n0
    finally:
        await watchdog.stop()


async def test_flap_below_retry_count_moves_nothing(cluster: Cluster, watchdog: Watchdog) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    put(n1, make_inspect("a", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sa"}))
    n1.record_failure("connection refused")  # one short of the retry count
    n1.record_success()
    await watchdog.settle()
    assert n1.state is EngineState.HEALTHY and n1.failure_count == 0
    assert cluster.find_container("a").engine is n1
    assert ("POST", "/containers/create") not in fake(n0).calls


async def test_node_back_during_create_keeps_its_own_copy(
    cluster: Cluster, watchdog: Watchdog
) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    old = put(n1, make_inspect("a", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sa"}))
    gate = fake(n0).create_gate = asyncio.Event()
    fail(n1)
    for _ in range(20):  # the create is now waiting at the gate
        await asyncio.sleep(0)
    assert ("POST", "/containers/create") in fake(n0).calls
    fake(n1).down = False
    assert await n1.recover()  # back while the create is in flight
    gate.set()
    await watchdog.settle()
    assert list(fake(n0).containers) == []  # the new copy was removed again
    assert cluster.find_container("a").container.id == old.id
    assert [p.container.id for p in cluster.containers()] == [old.id]


# -- engine recovery ---------------------------------------------------------------------
async def test_stale_copies_go_before_the_node_is_healthy(cluster: Cluster) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    put(n0, make_inspect("a", {SWARM_ID_LABEL: "sa"}, created=1_800_000_000.0))
    stale = make_inspect("a", {SWARM_ID_LABEL: "sa"})
    own = make_inspect("c", {SWARM_ID_LABEL: "sc"})
    fail(n1)
    fake(n1).containers.update({stale["Id"]: stale, own["Id"]: own})
    seen: list[tuple[str, bool]] = []
    cluster.add_state_listener(
        lambda engine, action: seen.append((action, stale["Id"] in fake(n1).containers))
    )
    fake(n1).down = False
    n1.record_success()  # a call succeeded: not healthy yet, the recovery starts
    assert n1.state is EngineState.UNHEALTHY
    assert await n1.recover()
    assert seen == [("engine_reconnect", False)]
    assert ("DELETE", f"/containers/{stale['Id']}") in fake(n1).calls
    assert set(n1.containers) == {own["Id"]}
    assert cluster.find_container("a").engine is n0


async def test_recovery_that_fails_stays_unhealthy(cluster: Cluster) -> None:
    n1 = add_engine(cluster, "node-1")
    fail(n1)
    assert not await n1.recover()
    assert n1.state is EngineState.UNHEALTHY and not n1.recovering


# -- one copy per swarm ID ---------------------------------------------------------------------
async def test_only_one_copy_of_a_swarm_id_is_visible(cluster: Cluster) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    old = put(n1, make_inspect("a", {SWARM_ID_LABEL: "sa"}))
    new = put(n0, make_inspect("a", {SWARM_ID_LABEL: "sa"}, created=1_800_000_000.0))
    n1.state = EngineState.UNHEALTHY
    assert [p.container.id for p in cluster.containers()] == [new.id]
    assert cluster.find_container("a").container.id == new.id
    assert cluster.find_container("sa").container.id == new.id
    assert cluster.find_container(old.id).container.id == old.id  # exact IDs still resolve
    listing = await fake(n1).call("GET", "/containers/json")
    assert cluster.duplicate_copies(n1, listing, newer_only=True) == [old.id]
    assert cluster.duplicate_copies(n0, [
        {"Id": new.id, "Labels": {SWARM_ID_LABEL: "sa"}, "Created": 1_800_000_000}
    ], newer_only=True) == []
    n0.forget_container(new.id)
    assert cluster.find_container("a").container.id == old.id
    assert len(cluster.copies("sa")) == 1


async def test_new_primary_takes_over_nodes_that_failed_before(cluster: Cluster) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    # As a replica sees it: the old primary moved "a" already; "b" was never moved.
    stale = put(n1, make_inspect("a", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sa"}))
    moved = put(n0, make_inspect("a", {SWARM_ID_LABEL: "sa"}, created=1_800_000_000.0))
    put(n1, make_inspect("b", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sb"}))
    fail(n1)  # no watchdog running yet: nothing happens
    assert cluster.find_container("b").engine is n1
    watchdog = Watchdog(cluster, retry_delays=())
    watchdog.start()  # leadership acquired
    try:
        await watchdog.settle()
    finally:
        await watchdog.stop()
    assert stale.id not in n1.containers  # superseded: dropped, its name is free
    assert cluster.find_container("a").container.id == moved.id
    assert cluster.find_container("b").engine is n0
    creates = [c for c in fake(n0).calls if c[1] == "/containers/create"]
    assert len(creates) == 1


async def test_a_copy_on_a_dead_node_replaces_nothing(cluster: Cluster) -> None:
    n0 = add_engine(cluster, "node-0")
    n1 = add_engine(cluster, "node-1")
    put(n0, make_inspect("a", {SWARM_ID_LABEL: "sa"}, created=1_800_000_000.0))
    n0.state = EngineState.UNHEALTHY
    mine = make_inspect("a", {SWARM_ID_LABEL: "sa"})
    fail(n1)
    fake(n1).containers[mine["Id"]] = mine
    fake(n1).down = False
    assert await n1.recover()
    assert mine["Id"] in n1.containers  # kept: the only other copy is on a dead node
