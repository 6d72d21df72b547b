"""Cluster-wide name uniqueness: creates, renames and the watchdog's moves, over fake engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.errors import Conflict
from shoal.cluster.events import EventBus
from shoal.cluster.names import NameReservations, conflict
from shoal.cluster.records import SWARM_ID_LABEL
from shoal.cluster.watchdog import Watchdog
from shoal.scheduler.labels import RESCHEDULE_LABEL
from shoal.scheduler.scheduler import Scheduler
from tests.unit.test_watchdog import POLICY, add_engine, fail, fake, make_inspect, put

BUSYBOX = {"Image": "busybox"}


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(EngineSettings(failure_retry=2), Scheduler(), EventBus())
    try:
        yield c
    finally:
        await asyncio.gather(*(e.stop() for e in c.all_engines()))


async def until(predicate: object, rounds: int = 50) -> None:
    for _ in range(rounds):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_conflict_text_is_dockers() -> None:
    assert str(conflict("/dup", "abc")) == (
        'Conflict. The container name "/dup" is already in use by container "abc". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


def test_reservation_is_exclusive_shared_by_its_holder_and_released() -> None:
    names = NameReservations()
    with names.hold("/dup", "c1"):
        assert names.holder("dup") == "c1"
        with pytest.raises(Conflict, match='by container "c1"'), names.hold("dup", "c2"):
            pass
        with names.hold("dup", "c1"):  # the same container renaming twice shares it
            pass
        assert names.holder("dup") == "c1"
    assert names.holder("dup") is None
    with pytest.raises(RuntimeError), names.hold("dup", "c3"):
        raise RuntimeError("the rename failed")
    assert names.holder("dup") is None


async def test_rename_in_flight_holds_the_name_against_creates_and_renames(
    cluster: Cluster,
) -> None:
    n0, n1 = add_engine(cluster, "node-0"), add_engine(cluster, "node-1")
    a = put(n0, make_inspect("a"))
    b = put(n1, make_inspect("b"))
    with cluster.claim_name("dup", a.id):
        with pytest.raises(Conflict, match=f'"/dup" is already in use by container "{a.id}"'):
            await cluster.create_container(dict(BUSYBOX), "dup", None)
        with pytest.raises(Conflict, match=a.id), cluster.claim_name("/dup", b.id):
            pass
        cluster.check_name("dup", cid=a.id)  # its own rename may go on
    placed = await cluster.create_container(dict(BUSYBOX), "dup", None)
    with pytest.raises(Conflict, match=placed.container.id), cluster.claim_name("dup", b.id):
        pass


async def test_create_in_flight_holds_the_name_against_renames(cluster: Cluster) -> None:
    n0 = add_engine(cluster, "node-0")
    a = put(n0, make_inspect("a"))
    gate = fake(n0).create_gate = asyncio.Event()
    create = asyncio.create_task(cluster.create_container(dict(BUSYBOX), "dup", None))
    await until(lambda: ("POST", "/containers/create") in fake(n0).calls)
    with pytest.raises(Conflict, match='by container ""'), cluster.claim_name("dup", a.id):
        pass
    gate.set()
    placed = await create
    with pytest.raises(Conflict, match=placed.container.id), cluster.claim_name("dup", a.id):
        pass


async def test_every_engine_counts_and_a_down_copy_yields_only_to_its_own_move(
    cluster: Cluster,
) -> None:
    n0, n1 = add_engine(cluster, "node-0"), add_engine(cluster, "node-1")
    old = put(n1, make_inspect("web", {SWARM_ID_LABEL: "s-web"}))
    with pytest.raises(Conflict, match=old.id):
        cluster.check_name("web", swarm_id="s-web")  # its node is up: no second copy
    fail(n1)
    with pytest.raises(Conflict, match=old.id):
        cluster.check_name("web")  # down, but the name is still its own
    with pytest.raises(Conflict, match=old.id):
        cluster.check_name("web", swarm_id="s-other")
    cluster.check_name("web", swarm_id="s-web")  # the watchdog moving it
    assert n0.healthy


async def test_a_move_in_flight_keeps_the_name_from_other_creates(cluster: Cluster) -> None:
    n0, n1 = add_engine(cluster, "node-0"), add_engine(cluster, "node-1")
    old = put(n1, make_inspect("web", {RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "s-web"}))
    gate = fake(n0).create_gate = asyncio.Event()
    watchdog = Watchdog(cluster, retry_delays=())
    watchdog.start()
    try:
        fail(n1)
        await until(lambda: ("POST", "/containers/create") in fake(n0).calls)
        with pytest.raises(Conflict):
            await cluster.create_container(dict(BUSYBOX), "web", None)
        with pytest.raises(Conflict):
            cluster.check_name("web", swarm_id="s-web")  # the move's own create holds it
        assert cluster.find_container("web").container.id == old.id  # listed until moved
        gate.set()
        await asyncio.wait_for(watchdog.settle(), 5)
    finally:
        await watchdog.stop()
    moved = cluster.find_container("web")
    assert moved.engine is n0 and moved.container.swarm_id == "s-web"
    assert old.id not in n1.containers
    creates = [c for c in fake(n0).calls if c == ("POST", "/containers/create")]
    assert len(creates) == 1  # the user's create never reached an engine
