"""`/info` and `GET /containers/json` answered from the kept read views must equal what a
from-scratch computation over the engines gives, after any sequence of engine changes.

Real Cluster and Engine objects (never started, no network) are changed the way their
caches change (container create/start/die/pause/rename/destroy, a moved container's stale
copy, engine down/up/pending, a renamed engine, new images, time passing), and after every
step the incremental answers are compared with the old straightforward computation, kept
here as the reference.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.api.http import make_request
from shoal.api.primary import container_list
from shoal.api.primary.container_list import (
    ancestor_ids,
    list_containers,
    list_entry,
    match_list_filters,
    parse_filters,
)
from shoal.api.primary.context import ApiContext
from shoal.api.primary.system import build_info, info
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import Container, EngineSpecs, Image
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine

SWARM_ID = "com.docker.swarm.id"
START = 1_780_000_000.0
ENGINES = 3
QUERIES = [
    "/containers/json",
    "/containers/json?all=1",
    '/containers/json?all=1&filters={"status":["running"]}',
    '/containers/json?filters={"label":["tier=web"]}',
    '/containers/json?all=1&filters={"name":["c1"]}',
    '/containers/json?all=1&filters={"node":["node-1"]}',
    '/containers/json?all=1&filters={"exited":["3"]}',
    "/containers/json?limit=3",
]


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@dataclass
class World:
    """The cluster under test and a clock every answer is computed at."""

    cluster: Cluster
    engines: list[Engine]
    now: float = START
    serial: int = 0

    def containers(self) -> list[tuple[Engine, Container]]:
        return [(e, c) for e in self.engines for c in e.containers.values()]


def inspect_doc(w: World, name: str, status: str, swarm_id: str, labels: dict[str, str],
                created: float) -> dict[str, Any]:  # fmt: skip
    running = status in ("running", "paused")
    w.serial += 1
    # Engines stamp creation in nanoseconds: two containers never share a time. (The old
    # list left equal times in cache order; the kept order breaks such ties by ID.)
    created += w.serial / 1000
    return {
        "Id": f"{w.serial:064x}",
        "Name": "/" + name,
        "Created": stamp(created),
        "Path": "sleep",
        "Args": ["60"],
        "Image": "sha256:" + "ab" * 32,
        "Config": {"Image": "busybox", "Labels": {SWARM_ID: swarm_id, **labels}},
        "HostConfig": {"CpuShares": 512, "Memory": 16 << 20, "NetworkMode": "bridge"},
        "NetworkSettings": {
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None},
            "Networks": {"bridge": {"NetworkID": "n1"}},
        },
        "Mounts": [{"Type": "volume", "Name": "v", "Destination": "/data", "RW": True}],
        "State": {
            "Status": status, "Running": running, "Paused": status == "paused",
            "ExitCode": 3 if status == "exited" else 0,
            "StartedAt": stamp(w.now - 5), "FinishedAt": stamp(w.now - 2),
        },
    }  # fmt: skip


def replace(engine: Engine, old: Container, **state: Any) -> None:
    doc = json.loads(json.dumps(old.inspect))
    name = state.pop("name", None)
    if name is not None:
        doc["Name"] = "/" + name
    doc["State"].update(state)
    engine.restore_container(Container(doc, engine_cpus=engine.specs.cpus))


def apply(w: World, op: tuple[Any, ...]) -> None:
    kind = op[0]
    engine = w.engines[op[1] % len(w.engines)]
    existing = w.containers()
    if kind == "create":
        _, _, name, status, labelled = op
        labels = {"tier": "web"} if labelled else {}
        doc = inspect_doc(w, f"c{name}", status, f"s{w.serial}", labels, w.now)
        engine.restore_container(Container(doc, engine_cpus=engine.specs.cpus))
    elif kind == "copy" and existing:
        # A container moved here while its old node was down: two copies of one swarm ID.
        _, src = existing[op[2] % len(existing)]
        doc = inspect_doc(w, src.name.lstrip("/"), "running", src.swarm_id or "", {},
                          w.now)  # fmt: skip
        engine.restore_container(Container(doc, engine_cpus=engine.specs.cpus))
    elif kind in ("start", "die", "pause", "rename", "destroy") and existing:
        owner, c = existing[op[2] % len(existing)]
        if kind == "start":
            replace(owner, c, Status="running", Running=True, Paused=False,
                    StartedAt=stamp(w.now))  # fmt: skip
        elif kind == "die":
            replace(owner, c, Status="exited", Running=False, Paused=False, ExitCode=op[3],
                    FinishedAt=stamp(w.now))  # fmt: skip
        elif kind == "pause":
            replace(owner, c, Status="paused", Running=True, Paused=True)
        elif kind == "rename":
            replace(owner, c, name=f"r{op[3]}")
        else:
            owner.forget_container(c.id)
    elif kind == "state":
        engine.state = op[2]
        w.cluster.engine_state_changed(engine, "engine_disconnect")
    elif kind == "error":
        engine.error = "connection refused" if op[2] else ""
        engine.updated_at = w.now
    elif kind == "specs":
        old = engine.specs
        engine.specs = EngineSpecs(daemon_id=old.daemon_id, name=f"node-{op[2]}", cpus=old.cpus,
                                   memory=old.memory, labels={"zone": str(op[2])})  # fmt: skip
    elif kind == "images":
        engine.images = [
            Image({"Id": f"sha256:{i:064x}", "RepoTags": [f"img{i}:latest"] if i % 2 else []})
            for i in range(op[2])
        ]
        w.cluster.images_changed(engine)
    elif kind == "tick":
        w.now += op[2]


def reference_list(w: World, target: str) -> list[dict[str, Any]]:
    """The container list as it was computed before the read views: every container walked,
    sorted and rendered for the request."""
    request = make_request("GET", target)
    filters = parse_filters(request.arg("filters"))
    show_all = request.flag("all")
    limit = int(request.arg("limit") or "-1")
    show_all = show_all or "status" in filters or limit > 0
    ancestors = None
    if "ancestor" in filters:
        ancestors = {
            id(e): ancestor_ids(e, filters["ancestor"]) for e in w.cluster.active_engines()
        }
    chosen = [
        p
        for p in w.cluster.containers()
        if (show_all or (p.container.running and p.engine.healthy))
        and match_list_filters(p, filters, {}, ancestors)
    ]
    chosen.sort(key=lambda p: p.container.created, reverse=True)
    if limit > 0:
        chosen = chosen[:limit]
    return [list_entry(p, w.now) for p in chosen]


async def check(w: World, ctx: ApiContext) -> None:
    class Clock:
        @staticmethod
        def time() -> float:
            return w.now

    with patch.object(container_list, "time", Clock):
        for target in QUERIES:
            response = await list_containers(ctx, make_request("GET", target), {})
            assert response.status == 200
            assert json.loads(response.body) == reference_list(w, target), target
    response = await info(ctx, make_request("GET", "/info"), {})
    got = json.loads(response.body)
    want = json.loads(json.dumps(build_info(ctx)))
    for doc in (got, want):
        del doc["SystemTime"]
    assert got == want


ops = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 9), st.integers(0, 5),
              st.sampled_from(["running", "exited", "created", "paused"]), st.booleans()),
    st.tuples(st.just("copy"), st.integers(0, 9), st.integers(0, 99)),
    st.tuples(st.sampled_from(["start", "pause", "destroy"]), st.integers(0, 9),
              st.integers(0, 99)),
    st.tuples(st.sampled_from(["die", "rename"]), st.integers(0, 9), st.integers(0, 99),
              st.integers(0, 5)),
    st.tuples(st.just("state"), st.integers(0, 9),
              st.sampled_from([EngineState.HEALTHY, EngineState.UNHEALTHY,
                               EngineState.PENDING])),
    st.tuples(st.just("error"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("specs"), st.integers(0, 9), st.integers(0, 12)),
    st.tuples(st.just("images"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(st.just("tick"), st.integers(0, 9),
              st.sampled_from([0.4, 1.0, 30.0, 59.5, 61.0, 1800.0, 3600.0, 90000.0])),
)  # fmt: skip


async def run_sequence(sequence: list[tuple[Any, ...]], *, read_every: int = 1) -> None:
    settings_ = EngineSettings()
    cluster = Cluster(settings_, Scheduler(), EventBus())
    engines = []
    for i in range(ENGINES):
        specs = EngineSpecs(daemon_id=f"D{i}", name=f"node-{i}", cpus=4, memory=8 << 30)
        engine = adopt_engine(cluster, f"10.0.0.{i + 1}:2375", specs, clock=lambda: START)
        engines.append(engine)
    w = World(cluster, engines)
    ctx = ApiContext(cluster, filters=["health"])
    try:
        await check(w, ctx)
        for i, op in enumerate(sequence, 1):
            if op[0] != "read":
                apply(w, op)
            if op[0] == "read" or (read_every and i % read_every == 0):
                await check(w, ctx)
        await check(w, ctx)
        # An engine leaving takes its containers out of every answer.
        await cluster.remove_engine(cluster.all_engines()[0].address.entry)
        await check(w, ctx)
    finally:
        for engine in engines:
            await engine.client.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=40))
def test_incremental_reads_equal_a_recomputation(sequence: list[tuple[Any, ...]]) -> None:
    asyncio.run(run_sequence(sequence))


def test_a_long_history_patches_the_order_and_rebuilds_it() -> None:
    """Enough changes between reads to rebuild the order by one sort, then a few that patch it."""
    many = [("create", i, i % 6, "running" if i % 3 else "exited", i % 2 == 0) for i in range(80)]
    few = [("die", 0, 5, 1), ("start", 1, 7), ("destroy", 2, 3), ("tick", 0, 61.0)]
    asyncio.run(run_sequence([*many, *few]))


def test_changes_nobody_read_are_dropped_and_the_order_sorted_afresh() -> None:
    """More changes than containers between two reads: the pending ones are forgotten (no
    unbounded backlog when nobody lists) and the next read sorts every slot."""
    churn: list[tuple[Any, ...]] = [("create", i, i % 6, "running", False) for i in range(400)]
    churn.append(("read",))
    # 433 changes (866 pending slot moves) pass the backlog's bound; 10 more stay pending,
    # few enough that only the dropped backlog makes the next read sort afresh.
    churn += [op for i in range(250) for op in (("die", 0, i, 1), ("start", 0, i + 7))][:443]
    asyncio.run(run_sequence(churn, read_every=0))
