"""Log lines about an engine name it, lines about a container name its ID and node, as
structured fields (the JSON log format writes them as keys)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.cluster.records import SWARM_ID_LABEL
from shoal.cluster.watchdog import Watchdog
from shoal.logs import JsonFormatter, LogfmtFormatter
from shoal.scheduler.labels import CONSTRAINTS_LABEL, RESCHEDULE_LABEL
from shoal.scheduler.scheduler import Scheduler
from tests.unit.test_watchdog import POLICY, add_engine, fail, make_inspect, put


def fields_of(caplog: pytest.LogCaptureFixture, start: str) -> list[dict[str, object]]:
    return [
        getattr(r, "fields", {}) for r in caplog.records if r.getMessage().startswith(start)
    ]


async def test_engine_and_container_lines_carry_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shoal.cluster")
    cluster = Cluster(EngineSettings(failure_retry=2), Scheduler(), EventBus())
    watchdog = Watchdog(cluster, retry_delays=())
    watchdog.start()
    try:
        add_engine(cluster, "node-0", {"storage": "ssd"})
        n1 = add_engine(cluster, "node-1", {"storage": "disk"})
        pinned = put(n1, make_inspect("p", {CONSTRAINTS_LABEL: '["storage==disk"]',
                                            RESCHEDULE_LABEL: POLICY, SWARM_ID_LABEL: "sp"}))
        fail(n1)
        await asyncio.wait_for(watchdog.settle(), 5)
    finally:
        await watchdog.stop()
        await asyncio.gather(*(e.stop() for e in cluster.all_engines()))
    assert fields_of(caplog, "Flagging engine as unhealthy") == [
        {"engine": "node-1", "addr": n1.addr}
    ]
    assert fields_of(caplog, "Failed to reschedule container") == [
        {"container": pinned.id, "node": "node-1"}
    ]
    assert fields_of(caplog, "Giving up rescheduling") == [{"engine": "node-1", "addr": n1.addr}]

    record = next(r for r in caplog.records if r.getMessage().startswith("Failed to reschedule"))
    line = json.loads(JsonFormatter().format(record))
    assert (line["container"], line["node"], line["level"]) == (pinned.id, "node-1", "error")
    text = LogfmtFormatter().format(record)
    assert text.endswith(f"container={pinned.id} node=node-1")
