"""Hypothesis: the scheduler views kept per engine equal a from-scratch build, always.

Random sequences of engine changes (containers created, started, stopped, renamed,
destroyed; engines failing, recovering, joining, leaving, changing identity, specs or
images; creates in flight) are applied to real Cluster/Engine objects through the
calls the engines make themselves (no network). After every step the cluster's node
views, the rankings the scheduler draws from them and the engine each ranked node
maps back to must be what `build_node` over every active engine gives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.cluster.client import EngineAddress, EngineClient
from shoal.cluster.cluster import Cluster, PendingCreate
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.nodes import build_node
from shoal.cluster.records import Container, EngineSpecs, Image, ImageIndex
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.node import Node, NodeContainer
from shoal.scheduler.scheduler import Scheduler

SWARM_ID = "com.docker.swarm.id"
GB = 1 << 30
SETTINGS = EngineSettings(failure_retry=3, overcommit=0.05)
MAX_ENGINES = 6

#: Requests the rankings are checked with: plain ones, and ones every filter acts on.
CONFIGS: list[dict[str, Any]] = [
    {"Image": "busybox"},
    {"Image": "busybox", "HostConfig": {"Memory": GB}},
    {"Image": "busybox", "HostConfig": {"Memory": 3 * GB, "CpuShares": 2}},
    {"Image": "busybox", "HostConfig": {"CpuShares": 3}},
    {"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}},
    {"Image": "busybox", "Env": ["constraint:zone==a"]},
    {"Image": "busybox", "Env": ["affinity:image==redis", "constraint:zone!=b"]},
    {"Image": "busybox", "Labels": {"com.docker.swarm.affinities": '["container==~web*"]'}},
    {"Image": "busybox", "HostConfig": {"Links": ["web0:w"]}},
]

op = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 9), st.sampled_from(["web", "db"]),
              st.sampled_from([0, GB // 2, 2 * GB]), st.sampled_from([0, 1024, 2048]),
              st.sampled_from(["", "8080", "9090"])),
    st.tuples(st.just("state"), st.integers(0, 9), st.integers(0, 40),
              st.sampled_from(["running", "exited", "paused", "created"])),
    st.tuples(st.just("rename"), st.integers(0, 9), st.integers(0, 40), st.integers(0, 99)),
    st.tuples(st.just("destroy"), st.integers(0, 9), st.integers(0, 40)),
    st.tuples(st.just("fail"), st.integers(0, 9)),
    st.tuples(st.just("answer"), st.integers(0, 9)),
    st.tuples(st.just("recover"), st.integers(0, 9)),
    st.tuples(st.just("images"), st.integers(0, 9),
              st.lists(st.sampled_from(["redis", "busybox", "nginx"]), max_size=3)),
    st.tuples(st.just("specs"), st.integers(0, 9), st.sampled_from([2, 4, 8]),
              st.sampled_from([2 * GB, 4 * GB]), st.sampled_from(["a", "b", ""]),
              st.sampled_from(["", "1", "3", "x"])),
    st.tuples(st.just("new_id"), st.integers(0, 9)),
    st.tuples(st.just("join"), st.booleans()),
    st.tuples(st.just("leave"), st.integers(0, 9)),
    st.tuples(st.just("pending"), st.integers(0, 9), st.integers(0, 3)),
    st.tuples(st.just("done"), st.integers(0, 9)),
)


class World:
    """A cluster of never-started engines, changed the way engines change it."""

    def __init__(self) -> None:
        self.cluster = Cluster(SETTINGS, Scheduler(), EventBus())
        self.serial = 0
        #: Schedulers that keep their rankings from one step to the next.
        self.kept = {s: Scheduler(strategy=s) for s in ("spread", "binpack")}

    def engines(self) -> list[Engine]:
        return self.cluster.all_engines()

    def pick(self, i: int) -> Engine | None:
        engines = self.engines()
        return engines[i % len(engines)] if engines else None

    def join(self, validate: bool) -> None:
        if len(self.engines()) >= MAX_ENGINES:
            return
        self.serial += 1
        entry = f"10.1.0.{self.serial}:2375"
        address = EngineAddress.parse(entry)
        engine = Engine(address, EngineClient(address, None), SETTINGS, self.cluster)
        engine.specs = EngineSpecs(daemon_id=f"D{self.serial}", name=f"node-{self.serial % 4}",
                                   cpus=4, memory=4 * GB, labels={"zone": "ab"[self.serial % 2]})
        if self.serial % 3 == 0:
            engine.specs.labels["containerslots"] = "2"
        self.cluster._engines[entry] = engine
        if validate:  # what `Engine._validate` does once its caches are in
            engine.state = EngineState.HEALTHY
            self.cluster.engine_state_changed(engine, "engine_connect")

    def container(self, engine: Engine, i: int) -> Container | None:
        found = list(engine.containers.values())
        return found[i % len(found)] if found else None

    async def apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "join":
            self.join(step[1])
            return
        if kind == "done":
            keys = list(self.cluster._pending)
            if keys:
                del self.cluster._pending[keys[step[1] % len(keys)]]
            return
        engine = self.pick(step[1])
        if engine is None:
            return
        if kind == "create":
            _, _, name, memory, shares, port = step
            self.serial += 1
            cid = f"{self.serial:064x}"
            bindings = {"80/tcp": [{"HostIp": "", "HostPort": port}]} if port else {}
            engine.restore_container(Container({
                "Id": cid, "Name": f"/{name}{self.serial}", "Created": "2026-01-01T00:00:00Z",
                "Config": {"Image": "busybox", "Labels": {SWARM_ID: "s" + cid}},
                "HostConfig": {"Memory": memory, "CpuShares": shares, "PortBindings": bindings},
                "NetworkSettings": {"Ports": {}},
                "State": {"Status": "created", "Running": False},
            }, engine_cpus=engine.specs.cpus or 1))
        elif kind in ("state", "rename"):
            found = self.container(engine, step[2])
            if found is None:
                return
            inspect = dict(found.inspect)
            if kind == "state":
                inspect["State"] = {"Status": step[3], "Running": step[3] == "running"}
            else:
                inspect["Name"] = f"/renamed{step[3]}"
            # What an event's refresh does: a fresh inspect replaces the cached one.
            engine.restore_container(Container(inspect, engine_cpus=found.engine_cpus))
        elif kind == "destroy":
            found = self.container(engine, step[2])
            if found is not None:
                engine.forget_container(found.id)
        elif kind == "fail":
            engine.record_failure("connection refused")
        elif kind == "answer":
            if engine.state is EngineState.HEALTHY:
                engine.record_success()  # the health counter drops back to 0, unannounced
        elif kind == "recover":
            if engine.state is EngineState.UNHEALTHY:  # the end of `Engine._recover`
                engine.state = EngineState.HEALTHY
                engine.failure_count = 0
                self.cluster.engine_state_changed(engine, "engine_reconnect")
        elif kind == "images":
            engine.images = [
                Image({"Id": f"sha256:{n}", "RepoTags": [f"{n}:latest"]}) for n in step[2]
            ]
            engine.image_index = ImageIndex(engine.images)
            self.cluster.images_changed(engine)
        elif kind == "specs":  # `update_specs`: a new specs object, nobody told
            _, _, cpus, memory, zone, slots = step
            labels = {"zone": zone} if zone else {}
            if slots:
                labels["containerslots"] = slots
            engine.specs = dataclasses.replace(engine.specs, cpus=cpus, memory=memory,
                                               labels=labels)
        elif kind == "new_id":  # the daemon came back with another ID: Pending, unannounced
            if engine.state is not EngineState.PENDING:
                engine.state = EngineState.PENDING
            engine.specs = dataclasses.replace(engine.specs, daemon_id=engine.specs.daemon_id + "x")
        elif kind == "leave":
            await self.cluster.remove_engine(engine.address.entry)
        elif kind == "pending":
            self.serial += 1
            config = CONFIGS[step[2]]
            key = f"p{self.serial}"
            self.cluster._pending[key] = PendingCreate(key, engine, config, f"sid{self.serial}")


def view(node: Node) -> tuple[Any, ...]:
    return tuple(
        list(v) if isinstance(v, list | tuple) else v
        for v in (getattr(node, f.name) for f in dataclasses.fields(node))
    )


def expected_views(cluster: Cluster) -> list[Node]:
    """From scratch: every active engine's node, with the pending creates overlaid."""
    out = []
    for engine in cluster.active_engines():
        node = build_node(engine)
        extra = [
            NodeContainer.pending(p.config, p.display_name)
            for p in cluster._pending.values()
            if p.engine is engine
        ]
        out.append(node.with_containers(*extra) if extra else node)
    return out


def ranking(scheduler: Scheduler, config: dict[str, Any], nodes: list[Node],
            limit: int | None) -> list[str] | str:
    try:
        return [n.id for n in scheduler.select(dict(config), nodes, limit=limit)]
    except SchedulerError as exc:
        return f"error: {exc}"


def check(world: World, seed: int) -> None:
    cluster = world.cluster
    actual = cluster.node_views()
    expected = expected_views(cluster)
    assert [view(n) for n in actual] == [view(n) for n in expected]
    assert list(cluster._views.active()) == cluster.active_engines()
    by_id = {e.id: e for e in cluster.active_engines()}
    for node in actual:
        assert cluster.engine_for_node(node) is by_id[node.id]
    for strategy in ("spread", "binpack", "random"):
        for config in CONFIGS:
            for limit in (None, 1, 2):
                kept = world.kept.get(strategy) or Scheduler(
                    strategy=strategy, rng=random.Random(seed)
                )
                # The full filter pipeline and strategy, over views built from scratch.
                fresh = Scheduler(strategy=strategy, rng=random.Random(seed), keep_rankings=False)
                assert ranking(kept, config, actual, limit) == ranking(
                    fresh, config, expected, limit
                ), (strategy, config, limit)


async def run(steps: list[tuple[Any, ...]], seed: int) -> None:
    world = World()
    for _ in range(3):
        world.join(True)
    try:
        check(world, seed)
        for step in steps:
            await world.apply(step)
            check(world, seed)
    finally:
        for engine in world.engines():
            await engine.client.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=40), st.integers(0, 2**16))
def test_kept_node_views_equal_a_fresh_build(steps: list[tuple[Any, ...]], seed: int) -> None:
    asyncio.run(run(steps, seed))


def test_unchanged_engines_keep_their_view_objects() -> None:
    """What makes a create cheap: a change rebuilds the view of its own engine only."""

    async def scenario() -> None:
        world = World()
        for _ in range(3):
            world.join(True)
        try:
            before = world.cluster.node_views()
            await world.apply(("create", 1, "web", GB, 0, ""))
            after = world.cluster.node_views()
            assert [a is b for a, b in zip(before, after, strict=True)] == [True, False, True]
            assert len(after[1].containers) == 1 and not before[1].containers
        finally:
            for engine in world.engines():
                await engine.client.close()

    asyncio.run(scenario())
