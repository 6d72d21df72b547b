"""The primary API's own logic over a small cluster of unstarted engines: the error map,
the fan-out policy, list filters and prune merging. Engine calls are answered in memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from shoal.api.http import HTTPError, Response, make_request
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.container_list import list_containers
from shoal.api.primary.context import ApiContext
from shoal.api.primary.errors import answer_for
from shoal.api.primary.fanout import Policy, fan_out
from shoal.api.primary.routes import ROUTES
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineSettings, EngineState
from shoal.cluster.errors import (
    ClusterError,
    Conflict,
    EngineConnectionError,
    EngineError,
    NotFound,
)
from shoal.cluster.events import EventBus
from shoal.cluster.records import Container, EngineSpecs
from shoal.scheduler.errors import NO_HEALTHY_NODE, SchedulerError
from shoal.scheduler.scheduler import Scheduler
from tests.unit.cluster_factories import adopt_engine

Answer = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


async def no_answer(method: str, path: str, kwargs: dict[str, Any]) -> Any:
    return {} if path.endswith("/volumes") else []


@pytest_asyncio.fixture(loop_scope="function")
async def cluster() -> AsyncIterator[tuple[Cluster, list[Engine]]]:
    cl = Cluster(EngineSettings(), Scheduler(), EventBus())
    engines = []
    for i in range(2):
        specs = EngineSpecs(daemon_id=f"D{i}", name=f"node-{i}", cpus=2, memory=1 << 30)
        engine = adopt_engine(cl, f"127.0.0.1:{9100 + i}", specs)
        answer(engine, no_answer)
        engines.append(engine)
    try:
        yield cl, engines
    finally:
        for engine in engines:
            await engine.client.close()


def answer(engine: Engine, fn: Answer) -> None:
    """Replace the engine's HTTP calls with `fn(method, path, kwargs)`."""

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        return await fn(method, path, kwargs)

    engine.call = call  # type: ignore[method-assign]


def put(cl: Cluster, engine: Engine, cid: str, name: str, **extra: Any) -> None:
    labels = extra.pop("labels", {})
    running = extra.pop("running", True)
    inspect = {
        "Id": cid,
        "Name": f"/{name}",
        "Created": extra.pop("created", "2024-01-01T00:00:00Z"),
        "Config": {"Labels": labels, "Image": "busybox"},
        "State": {"Status": "running" if running else "exited", "Running": running},
        **extra,
    }
    c = Container(inspect)
    engine.containers[c.id] = c
    cl.container_changed(engine, None, c)


async def call(handler: PrimaryHandler, method: str, target: str, body: bytes = b"") -> Response:
    response = await handler(make_request(method, target, body=body))
    assert isinstance(response, Response)
    return response


# -- the error map ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (HTTPError(413, "request body too large"), 413, "request body too large"),
        (NotFound("No such container: x"), 404, "No such container: x"),
        (Conflict("name taken"), 409, "name taken"),
        (EngineError(409, "removal in progress"), 409, "removal in progress"),
        (EngineError(304, ""), 304, ""),
        (EngineConnectionError("Cannot connect to the Docker engine"), 500,
         "Cannot connect to the Docker engine"),
        (SchedulerError(NO_HEALTHY_NODE), 500, NO_HEALTHY_NODE),
        (ClusterError("other"), 500, "other"),
    ],
)
def test_error_map_answers_each_class(exc: Exception, status: int, message: str) -> None:
    assert answer_for(exc) == (status, message)


async def test_handler_failures_become_docker_answers(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    cl, engines = cluster
    handler = PrimaryHandler(ApiContext(cl))
    missing = await call(handler, "GET", "/containers/nope/json")
    assert missing.status == 404
    assert json.loads(missing.body) == {"message": "No such container: nope"}
    assert ("Api-Version", "1.41") in missing.headers

    put(cl, engines[0], "a" * 64, "web")

    async def refuse(method: str, path: str, kwargs: dict[str, Any]) -> Any:
        raise EngineError(409, "cannot start: port is already allocated")

    answer(engines[0], refuse)
    started = await call(handler, "POST", "/containers/web/start")
    assert started.status == 409  # the engine's own status, not a 500
    assert json.loads(started.body)["message"] == "cannot start: port is already allocated"

    for engine in engines:
        engine.state = EngineState.UNHEALTHY
    pruned = await call(handler, "POST", "/containers/prune")
    assert pruned.status == 500
    assert json.loads(pruned.body)["message"] == NO_HEALTHY_NODE


def test_route_table_lists_each_route_once() -> None:
    keys = [(method, path) for method, path, _ in ROUTES]
    assert len(keys) == len(set(keys))
    assert ("GET", "/images/viz") in keys and ("POST", "/containers/{name:.*}/stop") in keys


# -- the fan-out policy -----------------------------------------------------------------


async def test_fan_out_all_joins_failures_one_per_line(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    _, engines = cluster

    async def busy(engine: Engine) -> Any:
        raise EngineError(409, "a prune operation is already running")

    with pytest.raises(EngineError) as err:
        await fan_out(engines, busy, Policy.ALL)
    assert err.value.status == 409  # every engine said the same
    assert err.value.message == (
        "node-0: a prune operation is already running\n"
        "node-1: a prune operation is already running"
    )

    async def half(engine: Engine) -> Any:
        if engine.name == "node-1":
            raise EngineConnectionError("connection refused")
        return {"ok": engine.name}

    with pytest.raises(EngineError) as err:
        await fan_out(engines, half, Policy.ALL)
    assert err.value.status == 500  # some succeeded: the cluster is left uneven
    assert err.value.message == "node-1: connection refused"
    assert await fan_out(engines, half, Policy.ANY) == [(engines[0], {"ok": "node-0"})]


async def test_fan_out_passes_a_lone_engines_error_as_is(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    _, engines = cluster
    original = EngineError(404, "No such image: x")

    async def missing(engine: Engine) -> Any:
        raise original

    with pytest.raises(EngineError) as err:
        await fan_out(engines[:1], missing, Policy.ALL)
    assert err.value is original
    with pytest.raises(EngineError) as err:
        await fan_out(engines, missing, Policy.ANY)  # nobody answered
    assert err.value.status == 404 and err.value.message.count("No such image: x") == 2


# -- prune merging ----------------------------------------------------------------------


async def test_volume_prune_any_node_may_fail(cluster: tuple[Cluster, list[Engine]]) -> None:
    cl, engines = cluster
    handler = PrimaryHandler(ApiContext(cl))

    async def pruned(method: str, path: str, kwargs: dict[str, Any]) -> Any:
        if path == "/volumes/prune":
            return {"VolumesDeleted": ["v1", "v2"], "SpaceReclaimed": 7}
        return {}

    async def down(method: str, path: str, kwargs: dict[str, Any]) -> Any:
        raise EngineConnectionError("connection refused")

    answer(engines[0], pruned)
    answer(engines[1], down)
    response = await call(handler, "POST", "/volumes/prune")
    assert response.status == 200
    assert json.loads(response.body) == {
        "VolumesDeleted": ["node-0/v1", "node-0/v2"],
        "SpaceReclaimed": 7,
    }
    answer(engines[0], down)
    response = await call(handler, "POST", "/networks/prune")
    assert response.status == 500
    assert json.loads(response.body)["message"] == (
        "node-0: connection refused\nnode-1: connection refused"
    )


async def test_container_prune_every_node_must_succeed(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    cl, engines = cluster
    handler = PrimaryHandler(ApiContext(cl))

    def pruner(deleted: list[str], space: int) -> Answer:
        async def prune(method: str, path: str, kwargs: dict[str, Any]) -> Any:
            if path == "/containers/prune":
                return {"ContainersDeleted": deleted, "SpaceReclaimed": space}
            return []

        return prune

    answer(engines[0], pruner(["a"], 3))
    answer(engines[1], pruner(["b", "c"], 4))
    response = await call(handler, "POST", "/containers/prune")
    assert json.loads(response.body) == {"ContainersDeleted": ["a", "b", "c"], "SpaceReclaimed": 7}

    async def refuse(method: str, path: str, kwargs: dict[str, Any]) -> Any:
        raise EngineError(409, "a prune operation is already running")

    answer(engines[1], refuse)
    response = await call(handler, "POST", "/containers/prune")
    assert response.status == 500
    assert json.loads(response.body)["message"] == "node-1: a prune operation is already running"


# -- list filters -----------------------------------------------------------------------


async def listed(cl: Cluster, query: str) -> list[dict[str, Any]]:
    response = await list_containers(
        ApiContext(cl), make_request("GET", f"/containers/json?{query}"), {}
    )
    return list(json.loads(response.body))


def filters(**values: list[str]) -> str:
    from urllib.parse import quote

    return "filters=" + quote(json.dumps(values))


async def test_list_filters_by_label_name_node_and_status(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    cl, (n0, n1) = cluster
    put(cl, n0, "a" * 64, "web-1", labels={"tier": "front"}, created="2024-01-01T00:00:01Z")
    put(cl, n1, "b" * 64, "web-2", labels={"tier": "back"}, created="2024-01-01T00:00:02Z")
    put(cl, n1, "c" * 64, "db", running=False, created="2024-01-01T00:00:03Z")

    everything = await listed(cl, "all=1")
    names = [["/node-1/db"], ["/node-1/web-2"], ["/node-0/web-1"]]
    assert [c["Names"] for c in everything] == names
    assert [c["Names"] for c in await listed(cl, "")] == [["/node-1/web-2"], ["/node-0/web-1"]]
    by_label = await listed(cl, filters(label=["tier=front"]))
    assert [c["Id"] for c in by_label] == ["a" * 64]
    assert len(await listed(cl, filters(label=["tier"]))) == 2
    assert [c["Id"] for c in await listed(cl, filters(name=["^/?web-[2]$"]))] == ["b" * 64]
    assert [c["Id"] for c in await listed(cl, "all=1&" + filters(node=["node-0"]))] == ["a" * 64]
    assert [c["Id"] for c in await listed(cl, filters(status=["exited"]))] == ["c" * 64]
    assert [c["Id"] for c in await listed(cl, "limit=1")] == ["c" * 64]
    # A pattern that is not a regex is looked for as text.
    assert await listed(cl, filters(name=["web-(("])) == []


async def test_list_refuses_what_an_engine_refuses(
    cluster: tuple[Cluster, list[Engine]],
) -> None:
    cl, _ = cluster
    with pytest.raises(HTTPError) as err:
        await listed(cl, filters(status=["sleeping"]))
    assert (err.value.status, err.value.message) == (400, "Invalid filter 'status=sleeping'")
    with pytest.raises(HTTPError) as err:
        await listed(cl, filters(colour=["red"]))
    assert (err.value.status, err.value.message) == (400, "invalid filter 'colour'")
    with pytest.raises(HTTPError) as err:
        await listed(cl, "limit=many")
    assert err.value.status == 400
