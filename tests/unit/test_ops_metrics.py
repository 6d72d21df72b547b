"""Metrics and the page's JSON from hand-made cluster snapshots (the live cluster is tested
in tests/integration/test_metrics.py and test_ops_page.py)."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.ops.metrics import Metrics
from shoal.ops.page import MAX_CONTAINERS, PageQuery, render_page
from shoal.ops.snapshot import ClusterSnapshot, ContainerView, NodeView, SnapshotCache


def node(i: int, state: str = "healthy", containers: int = 2, **kw: object) -> NodeView:
    fields: dict[str, object] = dict(
        name=f"node-{i}", addr=f"10.0.{i // 250}.{i % 250}:2375", state=state, error="",
        cpus=4, reserved_cpus=1, memory=8 << 30, reserved_memory=1 << 30, failures=0,
        containers=tuple(
            ContainerView(f"{i:04d}{j:060d}", f"c{i}-{j}", "busybox",
                          "running" if j % 2 == 0 else "exited")
            for j in range(containers)
        ),
    )
    fields.update(kw)
    return NodeView(**fields)  # type: ignore[arg-type]


def snapshot(nodes: list[NodeView], **kw: object) -> ClusterSnapshot:
    fields: dict[str, object] = dict(
        strategy="spread", role="primary", primary="tcp://127.0.0.1:2375", nodes=tuple(nodes),
        containers_by_state={"running": 3, "exited": 1}, event_listeners=2,
    )
    fields.update(kw)
    return ClusterSnapshot(**fields)  # type: ignore[arg-type]


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_cluster_metrics_from_a_snapshot() -> None:
    snap = snapshot([node(0), node(1, "unhealthy", failures=3), node(2, "pending", containers=0)])
    metrics = Metrics()
    metrics.watch_cluster(lambda: snap)
    got = samples(metrics)
    assert got[key("shoal_engines", state="healthy")] == 1
    assert got[key("shoal_engines", state="unhealthy")] == 1
    assert got[key("shoal_engines", state="pending")] == 1
    assert got[key("shoal_engines", state="disconnected")] == 0
    assert got[key("shoal_containers", state="running")] == 3
    assert got[key("shoal_api_event_listeners")] == 2
    assert got[key("shoal_leader")] == 1
    a1 = node(1).addr
    assert got[key("shoal_engine_state", node="node-1", addr=a1, state="unhealthy")] == 1
    assert key("shoal_engine_state", node="node-1", addr=a1, state="healthy") not in got
    assert got[key("shoal_engine_consecutive_failures", node="node-1", addr=a1)] == 3
    assert got[key("shoal_engine_cpus", node="node-0", addr=node(0).addr)] == 4
    assert got[key("shoal_engine_reserved_memory_bytes", node="node-0", addr=node(0).addr)] == (
        1 << 30)
    assert got[key("shoal_engine_containers", node="node-0", addr=node(0).addr,
                   state="exited")] == 1
    # Every known state is reported, so a count can go back to 0.
    assert got[key("shoal_engine_containers", node="node-2", addr=node(2).addr,
                   state="running")] == 0
    assert got[key("process_cpu_seconds_total")] >= 0


def test_replica_is_not_leader_and_collectors_count() -> None:
    metrics = Metrics(clock=iter([10.0, 12.5]).__next__)
    metrics.watch_cluster(lambda: snapshot([], role="replica", primary="10.0.0.9:2375"))
    got = samples(metrics)
    assert got[key("shoal_leader")] == 0
    assert math.isnan(got[key("shoal_leader_lock_renewal_age_seconds")])
    metrics.lock_renewed()
    metrics.api_requests.labels("/containers/{id}/json", "GET", "200").inc()
    metrics.watchdog_moves.labels("succeeded").inc()
    got = samples(metrics)
    assert got[key("shoal_leader_lock_renewal_age_seconds")] == 2.5
    assert got[key("shoal_api_requests_total", route="/containers/{id}/json", method="GET",
                   status="200")] == 1
    assert got[key("shoal_watchdog_moves_total", outcome="succeeded")] == 1
    assert got[key("shoal_watchdog_moves_total", outcome="failed")] == 0


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.scheduler_decisions.inc()
    assert samples(one)[key("shoal_scheduler_decisions_total")] == 1
    assert samples(two)[key("shoal_scheduler_decisions_total")] == 0


def test_snapshot_cache_reads_at_most_once_per_max_age_and_versions_changes() -> None:
    now = [0.0]
    reads: list[ClusterSnapshot] = []
    current = [snapshot([node(0)])]

    def read() -> ClusterSnapshot:
        reads.append(current[0])
        return current[0]

    cache = SnapshotCache(read, max_age=1.0, clock=lambda: now[0])
    first = cache.get()
    assert cache.version == 1
    now[0] = 0.9
    assert cache.get() is first and len(reads) == 1
    now[0] = 1.0
    current[0] = snapshot([node(0)], taken_at=5.0)  # equal apart from the time: same version
    cache.get()
    assert len(reads) == 2 and cache.version == 1
    now[0] = 2.5
    current[0] = snapshot([node(0, "unhealthy")])
    assert cache.get().nodes[0].state == "unhealthy"
    assert cache.version == 2


def test_page_at_a_thousand_nodes_is_one_page_plus_an_overview() -> None:
    nodes = [node(i, "unhealthy" if i % 100 == 7 else "healthy") for i in range(1000)]
    snap = snapshot(nodes)
    body = json.loads(render_page(snap, 3, PageQuery(page=2, per_page=48)))
    assert body["version"] == 3
    assert body["totals"]["nodes"] == 1000
    assert body["totals"]["engines"] == {
        "healthy": 990, "unhealthy": 10, "pending": 0, "disconnected": 0}
    assert body["totals"]["cpus"] == 990 * 4
    assert len(body["overview"]) == 1000
    assert body["pages"] == 21 and body["matched"] == 1000
    assert [n["name"] for n in body["nodes"]][:2] == ["node-96", "node-97"]
    assert len(body["nodes"]) == 48
    # A filter by state, then by name; a page past the end shows the last one.
    down = json.loads(render_page(snap, 3, PageQuery(per_page=48, state="unhealthy")))
    assert down["matched"] == 10 and {n["state"] for n in down["nodes"]} == {"unhealthy"}
    named = json.loads(render_page(snap, 3, PageQuery(page=9, search="node-99")))
    assert named["page"] == 0
    assert {n["name"] for n in named["nodes"]} == {"node-99", *(f"node-99{d}" for d in range(10))}


def test_long_container_lists_are_cut_and_counted() -> None:
    body = json.loads(render_page(snapshot([node(0, containers=120)]), 1, PageQuery()))
    card = body["nodes"][0]
    assert card["container_count"] == 120 and len(card["containers"]) == MAX_CONTAINERS
    assert card["running"] == 60
    assert card["containers"][0] == {
        "id": "0000" + "0" * 8, "name": "c0-0", "image": "busybox", "state": "running"}


@pytest.mark.parametrize(
    "params", [{"page": "-1"}, {"per_page": "0"}, {"per_page": "5000"}, {"page": "x"},
               {"state": "sleepy"}],
)
def test_bad_page_queries(params: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        PageQuery.parse(params)
