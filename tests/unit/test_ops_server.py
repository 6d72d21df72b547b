"""The ops listener's routes, over a real socket, with hand-made snapshots."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shoal.ops.metrics import Metrics
from shoal.ops.server import OpsServer
from shoal.ops.snapshot import ClusterSnapshot, SnapshotCache
from tests.unit.test_ops_metrics import node, snapshot


async def started(read: list[ClusterSnapshot]) -> OpsServer:
    snapshots = SnapshotCache(lambda: read[0], max_age=0.0)
    metrics = Metrics()
    metrics.watch_cluster(snapshots.latest)
    server = OpsServer(metrics, snapshots, "127.0.0.1", 0, stream_interval=0.05)
    await server.start()
    return server


async def test_routes() -> None:
    current = [snapshot([node(0), node(1, "unhealthy")])]
    server = await started(current)
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                names = {f.name for f in text_string_to_metric_families(await resp.text())}
                assert {"shoal_engines", "shoal_engine_cpus", "process_cpu_seconds"} <= names
            async with session.get(base + "/") as resp:
                assert resp.status == 200
                page = await resp.text()
                assert "/static/app.js" in page and "http" not in page.replace("http-equiv", "")
            for asset in ("app.js", "app.css"):
                async with session.get(base + "/static/" + asset) as resp:
                    assert resp.status == 200
            async with session.get(base + "/static/../server.py") as resp:
                assert resp.status in (403, 404)
            async with session.get(base + "/api/cluster", params={"per_page": "1"}) as resp:
                assert resp.status == 200
                body = await resp.json()
                assert [n["name"] for n in body["nodes"]] == ["node-0"] and body["pages"] == 2
            async with session.get(base + "/api/cluster", params={"state": "nope"}) as resp:
                assert resp.status == 400
                assert "state must be one of" in (await resp.json())["message"]
    finally:
        await server.close()


async def test_stream_announces_new_versions_and_ends_on_close() -> None:
    current = [snapshot([node(0)])]
    server = await started(current)
    try:
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{server.port}/api/stream"
        ) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"

            async def next_event() -> str:
                lines = []
                while (line := (await resp.content.readline()).decode()) != "\n":
                    lines.append(line)
                return "".join(lines)

            assert await asyncio.wait_for(next_event(), 5) == "event: version\ndata: 1\n"
            current[0] = snapshot([node(0, "unhealthy")])
            assert await asyncio.wait_for(next_event(), 5) == "event: version\ndata: 2\n"
            closing = asyncio.create_task(server.close())
            assert await asyncio.wait_for(resp.content.read(), 5) == b""
            await asyncio.wait_for(closing, 5)
    finally:
        await server.close()
