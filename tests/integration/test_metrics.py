"""`--metrics-addr`: /metrics of a manager over real engines follows requests, creates, a failed
placement, a killed node and the watchdog's move off it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from shoal import __version__
from shoal.sandbox import Sandbox
from tests.integration.conftest import MakeSandbox
from tests.integration.manager import Manager, free_port, wait_until
from tests.integration.stores import Etcd

pytestmark = pytest.mark.asyncio(loop_scope="session")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class OpsManager(Manager):
    """A manager started with `--metrics-addr` on a free loopback port."""

    metrics_port: int
    sandbox: Sandbox

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


@pytest_asyncio.fixture(loop_scope="session")
async def ops_manager(make_sandbox: MakeSandbox) -> AsyncIterator[OpsManager]:
    """Two fresh nodes (one gets killed) and a manager over them with the ops listener."""
    sandbox = await make_sandbox(2, registry=False)
    port, metrics_port = free_port(), free_port()
    mgr = OpsManager(
        [
            "manage", "-H", f"tcp://127.0.0.1:{port}",
            "--engine-refresh-min-interval", "1s", "--engine-refresh-max-interval", "2s",
            "--engine-failure-retry", "2",
            "--metrics-addr", f"127.0.0.1:{metrics_port}",
            sandbox.discovery,
        ],
        port,
    )
    mgr.metrics_port = metrics_port
    mgr.sandbox = sandbox
    await mgr.start()
    try:
        await mgr.wait_nodes(2)
        yield mgr
    finally:
        await mgr.stop()


async def create(
    mgr: Manager, name: str, node: str | None, *, start: bool = True, **extra: Any
) -> tuple[int, str]:
    """POST /containers/create (pinned to `node` by a constraint), then start it: status, body."""
    body: dict[str, Any] = {"Image": "busybox", "Cmd": ["sleep", "600"], **extra}
    if node is not None:
        body["Env"] = [f"constraint:node=={node}"]
    async with mgr.session() as session:
        async with session.post(
            mgr.url + "/containers/create", params={"name": name}, json=body
        ) as resp:
            text = await resp.text()
            if resp.status != 201 or not start:
                return resp.status, text
        async with session.post(mgr.url + f"/containers/{name}/start") as started:
            assert started.status == 204, await started.text()
        return resp.status, text


async def scrape(mgr: OpsManager) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as session, session.get(
        mgr.ops_url + "/metrics"
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def wait_metrics(
    mgr: OpsManager, want: dict[tuple[str, frozenset[tuple[str, str]]], float], timeout: float
) -> Samples:
    """Scrape until every wanted sample has its value; bounded, says what differed."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        _, samples = await scrape(mgr)
        if all(samples.get(k) == v for k, v in want.items()):
            return samples
        await asyncio.sleep(0.3)
    wrong = {k: (samples.get(k), v) for k, v in want.items() if samples.get(k) != v}
    raise AssertionError(f"metrics did not settle within {timeout}s (got, want): {wrong}")


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_metrics_follow_creates_and_a_killed_engine(ops_manager: OpsManager) -> None:
    mgr = ops_manager
    sandbox = mgr.sandbox
    addr0, addr1 = sandbox.nodes[0].addr, sandbox.nodes[1].addr
    text, samples = await scrape(mgr)
    assert value(samples, "shoal_engines", state="healthy") == 2
    assert value(samples, "shoal_engines", state="unhealthy") == 0
    assert value(samples, "shoal_containers", state="running") == 0
    assert value(samples, "shoal_leader") == 1
    assert value(samples, "shoal_info", version=__version__, strategy="spread") == 1
    # The client library's process metrics come along.
    assert "process_cpu_seconds_total" in text and "python_info" in text
    cpus0 = value(samples, "shoal_engine_cpus", node="node-0", addr=addr0)
    assert cpus0 is not None and cpus0 >= 1
    assert value(samples, "shoal_engine_reserved_cpus", node="node-0", addr=addr0) == 0

    # Three creates: two running (one reserving a CPU and 64 MiB), one only created.
    mib64 = 64 * 1024 * 1024
    status, body = await create(
        mgr, "m-a", "node-0", HostConfig={"CpuShares": 1, "Memory": mib64}
    )
    assert status == 201, body
    # m-b prefers node-1 (a soft rule) and asks to be moved when its node fails.
    status, body = await create(
        mgr, "m-b", None, Env=["constraint:node==~node-1", "reschedule:on-node-failure"]
    )
    assert status == 201, body
    status, body = await create(mgr, "m-c", "node-1", start=False)
    assert status == 201, body
    # One failed create: no node satisfies the constraint; nothing may be counted for it.
    status, body = await create(mgr, "m-fail", "nowhere")
    assert status == 500 and "node==nowhere" in body, body

    samples = await wait_metrics(mgr, {
        key("shoal_containers", state="running"): 2,
        key("shoal_containers", state="created"): 1,
        key("shoal_engine_containers", node="node-0", addr=addr0, state="running"): 1,
        key("shoal_engine_containers", node="node-1", addr=addr1, state="running"): 1,
        key("shoal_engine_containers", node="node-1", addr=addr1, state="created"): 1,
        key("shoal_engine_reserved_memory_bytes", node="node-0", addr=addr0): mib64,
        key("shoal_engine_reserved_cpus", node="node-0", addr=addr0): 1,
        key("shoal_engine_reserved_memory_bytes", node="node-1", addr=addr1): 0,
    }, timeout=10)
    total = sum(v for (n, _), v in samples.items() if n == "shoal_containers")
    assert total == 3, "the failed create must not be counted"

    # The API counted each request by its route template, the scheduler each decision.
    async with mgr.session() as session:
        async with session.get(mgr.url + "/v1.41/containers/m-a/json") as resp:
            assert resp.status == 200
        async with session.get(mgr.url + "/containers/no-such-container/json") as resp:
            assert resp.status == 404
        async with session.get(mgr.url + "/no/such/route/m-a") as resp:
            assert resp.status == 404
    text, samples = await scrape(mgr)
    requests = "shoal_api_requests_total"
    create_route = {"route": "/containers/create", "method": "POST"}
    assert value(samples, requests, **create_route, status="201") == 3
    assert value(samples, requests, **create_route, status="500") == 1
    start_route = {"route": "/containers/{name}/start", "method": "POST"}
    assert value(samples, requests, **start_route, status="204") == 2
    inspect_route = {"route": "/containers/{name}/json", "method": "GET"}
    assert value(samples, requests, **inspect_route, status="200") == 1
    assert value(samples, requests, **inspect_route, status="404") == 1
    assert value(samples, requests, route="unknown", method="GET", status="404") == 1
    latency = "shoal_api_request_duration_seconds_count"
    assert value(samples, latency, route="/containers/create") == 4
    routes = {dict(labels).get("route") for (_, labels) in samples}
    assert not any("m-a" in r or "no-such" in r for r in routes if r), routes
    assert value(samples, "shoal_scheduler_decisions_total") == 3
    assert value(samples, "shoal_scheduler_failures_total", reason="constraint") == 1
    assert value(samples, "shoal_scheduler_decision_duration_seconds_count") == 4
    assert value(samples, "shoal_watchdog_moves_total", outcome="started") == 0

    # One engine killed: the engine counts move from healthy to unhealthy.
    await sandbox.nodes[1].kill()
    samples = await wait_metrics(mgr, {
        key("shoal_engines", state="healthy"): 1,
        key("shoal_engines", state="unhealthy"): 1,
        key("shoal_engine_state", node="node-1", addr=addr1, state="unhealthy"): 1,
        key("shoal_engine_state", node="node-0", addr=addr0, state="healthy"): 1,
    }, timeout=60)
    assert value(samples, "shoal_engine_state", node="node-1", addr=addr1, state="healthy") is None
    failures = value(samples, "shoal_engine_consecutive_failures", node="node-1", addr=addr1)
    assert failures is not None and failures >= 2
    reconnects = "shoal_engine_event_stream_reconnects_total"
    assert (value(samples, reconnects, node="node-1", addr=addr1) or 0) >= 1
    assert value(samples, reconnects, node="node-0", addr=addr0) is None

    # The watchdog moves m-b to node-0: one move started and succeeded, one more decision.
    samples = await wait_metrics(mgr, {
        key("shoal_watchdog_moves_total", outcome="succeeded"): 1,
        key("shoal_engine_containers", node="node-0", addr=addr0, state="running"): 2,
    }, timeout=30)
    assert value(samples, "shoal_watchdog_moves_total", outcome="started") == 1
    assert value(samples, "shoal_watchdog_moves_total", outcome="failed") == 0
    assert value(samples, "shoal_scheduler_decisions_total") == 4



async def test_leadership_metrics_follow_an_election_over_etcd() -> None:
    """Two replicated managers over a real etcd: the winner counts its election and renews
    the lock; when it stops, the other wins and counts its own."""
    store = Etcd()
    await store.start()
    managers: list[OpsManager] = []
    try:
        for _ in range(2):
            port, metrics_port = free_port(), free_port()
            mgr = OpsManager(
                [
                    "manage", "-H", f"tcp://127.0.0.1:{port}",
                    "--replication", "--advertise", f"127.0.0.1:{port}",
                    "--replication-ttl", "4s", "--heartbeat", "1s",
                    "--metrics-addr", f"127.0.0.1:{metrics_port}",
                    store.url("metrics"),
                ],
                port,
            )
            mgr.metrics_port = metrics_port
            managers.append(mgr)
            await mgr.start()

        async def leaders() -> list[OpsManager]:
            found = []
            for mgr in managers:
                if mgr.proc is not None and mgr.proc.returncode is None:
                    _, samples = await scrape(mgr)
                    if value(samples, "shoal_leader") == 1:
                        found.append(mgr)
            return found

        await wait_until(lambda: _one(leaders), 30, "one primary")
        first = (await leaders())[0]
        other = next(m for m in managers if m is not first)
        await asyncio.sleep(1.5)  # a few renewals (every TTL/12)
        _, samples = await scrape(first)
        assert value(samples, "shoal_leader_elections_won_total") == 1
        age = value(samples, "shoal_leader_lock_renewal_age_seconds")
        assert age is not None and 0 <= age < 4, age  # renewed well within the TTL
        _, samples = await scrape(other)
        assert value(samples, "shoal_leader") == 0
        assert value(samples, "shoal_leader_elections_won_total") == 0
        age = value(samples, "shoal_leader_lock_renewal_age_seconds")
        assert age is not None and math.isnan(age)  # never held the lock

        await first.stop()
        await wait_until(lambda: _one(leaders), 30, "the other manager to take over")
        _, samples = await scrape(other)
        assert value(samples, "shoal_leader_elections_won_total") == 1
    finally:
        for mgr in managers:
            await mgr.stop()
        await store.close()


async def _one(leaders: Callable[[], Awaitable[list[OpsManager]]]) -> bool:
    return len(await leaders()) == 1
