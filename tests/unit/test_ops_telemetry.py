"""The telemetry plumbing: what the API, scheduler, watchdog and election report, and
how `PrometheusTelemetry` turns it into samples (a live manager: test_metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from shoal.api.http import Hijack, HTTPError, Request, Response, make_request
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.context import ApiContext
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import SWARM_ID_LABEL
from shoal.cluster.watchdog import Watchdog
from shoal.leadership.election import Election
from shoal.ops.metrics import Metrics
from shoal.ops.telemetry import PrometheusTelemetry
from shoal.scheduler.errors import NO_RESOURCES, NO_SLOTS, SchedulerError
from shoal.scheduler.labels import CONSTRAINTS_LABEL as CONSTRAINTS
from shoal.scheduler.labels import RESCHEDULE_LABEL as RESCHEDULE
from shoal.scheduler.scheduler import Scheduler
from shoal.telemetry import NO_TELEMETRY, Telemetry
from tests.unit.scheduler_factories import node
from tests.unit.test_leadership import FakeLock, Recorder, running, wait_for
from tests.unit.test_watchdog import POLICY, add_engine, fail, make_inspect, put


class Recording:
    """A Telemetry that keeps every report, in order, as (call, args...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.open_hijacks = 0

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("api", route, method, status))

    def api_hijack(self, delta: int) -> None:
        self.open_hijacks += delta

    def scheduled(self, seconds: float, failure: str | None) -> None:
        assert seconds >= 0
        self.calls.append(("scheduled", failure))

    def engine_refresh_failed(self, node: str, addr: str) -> None:
        self.calls.append(("refresh_failed", node, addr))

    def engine_events_reconnect(self, node: str, addr: str) -> None:
        self.calls.append(("reconnect", node, addr))

    def duplicate_removed(self) -> None:
        self.calls.append(("duplicate",))

    def watchdog_move(self, outcome: str, count: int = 1) -> None:
        self.calls.append(("move", outcome, count))

    def election_won(self) -> None:
        self.calls.append(("elected",))

    def lock_renewed(self) -> None:
        self.calls.append(("renewed",))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == kind]


def test_recording_and_default_satisfy_the_protocol() -> None:
    telemetry: Telemetry = Recording()
    telemetry = NO_TELEMETRY
    telemetry.api_request("/x", "GET", 200, 0.0)  # does nothing, raises nothing
    assert telemetry is NO_TELEMETRY


# -- the API ---------------------------------------------------------------------------
@pytest_asyncio.fixture
async def handler() -> AsyncIterator[tuple[PrimaryHandler, Recording]]:
    rec = Recording()
    cluster = Cluster(EngineSettings(), Scheduler(), EventBus())
    yield PrimaryHandler(ApiContext(cluster), rec), rec
    await cluster.close()


async def test_requests_are_counted_by_route_template(
    handler: tuple[PrimaryHandler, Recording],
) -> None:
    primary, rec = handler
    for method, target in [
        ("GET", "/_ping"),
        ("HEAD", "/v1.41/_ping"),
        ("GET", "/containers/web-1/json"),
        ("GET", "/containers/node-0/web-2/json"),
        ("DELETE", "/v1.24/containers/web-3?force=1"),
        ("GET", "/no/such/path/a1b2c3"),
        ("PROPFIND", "/coffee"),
        ("PUT", "/containers/json"),
    ]:
        await primary(make_request(method, target))
    assert rec.of("api") == [
        ("/_ping", "GET", 200),
        ("/_ping", "HEAD", 200),
        ("/containers/{name}/json", "GET", 404),
        ("/containers/{name}/json", "GET", 404),
        ("/containers/{name}", "DELETE", 404),
        ("unknown", "GET", 404),  # never the raw path
        ("unknown", "other", 404),  # nor an arbitrary method
        ("unknown", "PUT", 405),
    ]


async def test_a_raising_handler_is_counted_with_the_status_the_server_sends(
    handler: tuple[PrimaryHandler, Recording],
) -> None:
    primary, rec = handler

    async def too_big(request: Request, params: dict[str, str]) -> Response:
        raise HTTPError(413, "request body too large")

    async def bug(request: Request, params: dict[str, str]) -> Response:
        raise RuntimeError("a bug")

    async def gone(request: Request, params: dict[str, str]) -> Response:
        raise ConnectionResetError("client left")

    primary.router.add("POST", "/test/{id}/big", too_big)
    primary.router.add("POST", "/test/{id}/bug", bug)
    primary.router.add("POST", "/test/{id}/gone", gone)
    big = await primary(make_request("POST", "/test/1/big"))  # answered like any HTTPError
    assert isinstance(big, Response) and big.status == 413
    with pytest.raises(RuntimeError):
        await primary(make_request("POST", "/test/2/bug"))
    with pytest.raises(ConnectionResetError):
        await primary(make_request("POST", "/test/3/gone"))
    assert rec.of("api") == [
        ("/test/{id}/big", "POST", 413),
        ("/test/{id}/bug", "POST", 500),
        ("/test/{id}/gone", "POST", 499),
    ]


async def test_a_hijacked_stream_is_open_while_it_runs(
    handler: tuple[PrimaryHandler, Recording],
) -> None:
    primary, rec = handler
    seen: list[int] = []

    async def run(request: Request, reader: asyncio.StreamReader, writer: Any) -> None:
        seen.append(rec.open_hijacks)

    async def attach(request: Request, params: dict[str, str]) -> Hijack:
        return Hijack(run)

    primary.router.add("POST", "/test/{name:.*}/attach", attach)
    response = await primary(make_request("POST", "/test/a/b/attach?stream=1"))
    assert isinstance(response, Hijack)
    assert rec.of("api") == [("/test/{name}/attach", "POST", 101)]
    assert rec.open_hijacks == 0  # counted while it runs, not before
    request = make_request("POST", "/test/a/b/attach")
    await response.run(request, cast(asyncio.StreamReader, None), cast(Any, None))
    assert seen == [1]
    assert rec.open_hijacks == 0


# -- the scheduler -----------------------------------------------------------------------
def test_each_decision_is_reported_with_its_failure_reason() -> None:
    rec = Recording()
    scheduler = Scheduler(telemetry=rec)
    nodes = [node("n1"), node("n2")]
    assert scheduler.select({"Image": "busybox"}, nodes)
    with pytest.raises(SchedulerError):
        scheduler.select({"Image": "busybox", "Env": ["constraint:node==nowhere"]}, nodes)
    with pytest.raises(SchedulerError):
        scheduler.select({"Image": "busybox"}, [node("sick", health=0)])
    # A soft rule that fails falls back to the second pass: still one decision.
    assert scheduler.select({"Image": "busybox", "Env": ["constraint:node==~nowhere"]}, nodes)
    assert rec.of("scheduled") == [(None,), ("constraint",), ("health",), (None,)]


def test_scheduler_error_reasons_stay_bounded() -> None:
    assert SchedulerError(NO_RESOURCES).reason == "resources"
    assert SchedulerError(NO_SLOTS, filter_name="containerslots").reason == "containerslots"
    assert SchedulerError("anything else, with a container name").reason == "other"
    assert SchedulerError("x", filter_name="affinity").reason == "affinity"


# -- the watchdog and the engines ---------------------------------------------------------------
async def test_watchdog_moves_and_retries_are_reported() -> None:
    rec = Recording()
    cluster = Cluster(
        EngineSettings(failure_retry=2, telemetry=rec), Scheduler(telemetry=rec), EventBus()
    )
    watchdog = Watchdog(cluster, retry_delays=(0.01, 0.01), telemetry=rec)
    watchdog.start()
    try:
        add_engine(cluster, "node-0", {"storage": "ssd"})
        n1 = add_engine(cluster, "node-1", {"storage": "disk"})
        put(n1, make_inspect("a", {RESCHEDULE: POLICY, SWARM_ID_LABEL: "sa"}))
        put(n1, make_inspect("p", {CONSTRAINTS: '["storage==disk"]',
                                   RESCHEDULE: POLICY, SWARM_ID_LABEL: "sp"}))
        fail(n1)
        await asyncio.wait_for(watchdog.settle(), 5)
    finally:
        await watchdog.stop()
        await asyncio.gather(*(e.stop() for e in cluster.all_engines()))
    moves = rec.of("move")
    # "a" moves at once; "p" fits nowhere: the first try and two bounded retries fail.
    assert moves.count(("started", 1)) == 4
    assert moves.count(("succeeded", 1)) == 1
    assert moves.count(("failed", 1)) == 3
    assert [m for m in moves if m[0] == "retried"] == [("retried", 1), ("retried", 1)]
    assert rec.of("scheduled").count((None,)) == 1
    assert rec.of("scheduled").count(("constraint",)) == 3


async def test_node_back_during_create_reports_a_duplicate_removed() -> None:
    rec = Recording()
    cluster = Cluster(
        EngineSettings(failure_retry=2, telemetry=rec), Scheduler(telemetry=rec), EventBus()
    )
    watchdog = Watchdog(cluster, retry_delays=(), telemetry=rec)
    watchdog.start()
    try:
        n0 = add_engine(cluster, "node-0")
        n1 = add_engine(cluster, "node-1")
        put(n1, make_inspect("a", {RESCHEDULE: POLICY, SWARM_ID_LABEL: "sa"}))
        gate = asyncio.Event()
        cast(Any, n0.client).create_gate = gate
        fail(n1)
        await wait_for(lambda: ("started", 1) in rec.of("move"))
        n1.state = EngineState.HEALTHY  # the node is back while the copy is created
        gate.set()
        await asyncio.wait_for(watchdog.settle(), 5)
    finally:
        await watchdog.stop()
        await asyncio.gather(*(e.stop() for e in cluster.all_engines()))
    assert rec.of("move") == [("started", 1), ("failed", 1)]
    assert rec.of("duplicate") == [()]


# -- leadership ----------------------------------------------------------------------------
async def test_an_election_won_and_its_renewals_are_reported() -> None:
    rec = Recording()
    election = Election(FakeLock(), "m1:1", Recorder(), retry=0.05, telemetry=rec)
    async with running(election):
        await wait_for(lambda: election.leader)
        await wait_for(lambda: len(rec.of("renewed")) >= 3)
    assert rec.of("elected") == [()]


# -- onto Prometheus -----------------------------------------------------------------------
def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_prometheus_telemetry_fills_the_collectors() -> None:
    metrics = Metrics(clock=iter([100.0, 104.0]).__next__)
    telemetry: Telemetry = PrometheusTelemetry(metrics)
    route = "/containers/{name}/json"
    telemetry.api_request(route, "GET", 200, 0.002)
    telemetry.api_request(route, "GET", 200, 0.004)
    telemetry.api_request(route, "GET", 404, 0.001)
    telemetry.api_hijack(1)
    telemetry.api_hijack(1)
    telemetry.api_hijack(-1)
    telemetry.scheduled(0.0003, None)
    telemetry.scheduled(0.0002, "constraint")
    telemetry.engine_refresh_failed("node-1", "10.0.0.2:2375")
    telemetry.engine_events_reconnect("node-1", "10.0.0.2:2375")
    telemetry.engine_events_reconnect("node-1", "10.0.0.2:2375")
    telemetry.watchdog_move("started", 2)
    telemetry.watchdog_move("succeeded")
    telemetry.duplicate_removed()
    telemetry.election_won()
    telemetry.lock_renewed()  # at 100.0; scraped at 104.0
    got = samples(metrics)
    assert got[key("shoal_api_requests_total", route=route, method="GET", status="200")] == 2
    assert got[key("shoal_api_requests_total", route=route, method="GET", status="404")] == 1
    assert got[key("shoal_api_request_duration_seconds_count", route=route)] == 3
    assert got[key("shoal_api_request_duration_seconds_bucket", route=route, le="0.0025")] == 2
    assert got[key("shoal_api_hijacked_streams")] == 1
    assert got[key("shoal_scheduler_decisions_total")] == 1
    assert got[key("shoal_scheduler_failures_total", reason="constraint")] == 1
    assert got[key("shoal_scheduler_decision_duration_seconds_count")] == 2
    node1 = {"node": "node-1", "addr": "10.0.0.2:2375"}
    assert got[key("shoal_engine_refresh_failures_total", **node1)] == 1
    assert got[key("shoal_engine_event_stream_reconnects_total", **node1)] == 2
    assert got[key("shoal_watchdog_moves_total", outcome="started")] == 2
    assert got[key("shoal_watchdog_moves_total", outcome="succeeded")] == 1
    assert got[key("shoal_watchdog_moves_total", outcome="failed")] == 0
    assert got[key("shoal_watchdog_duplicates_removed_total")] == 1
    assert got[key("shoal_leader_elections_won_total")] == 1
    assert got[key("shoal_leader_lock_renewal_age_seconds")] == 4.0
