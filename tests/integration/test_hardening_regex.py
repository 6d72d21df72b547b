"""Issue 12, item 1: a client's regular expression never stalls the manager.

The `id`/`name` list filters and `/regex/` scheduling rules take Go regexes; patterns with
nested quantifiers (`([0-9a-f]+)+z`) backtrack for ever under Python's `re`. The engine (Go,
RE2) answers them at once, and so must shoal, while it keeps answering everyone else.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DockerCli, remove_all_containers, run_docker
from tests.integration.manager import Manager

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVIL_ID = "([0-9a-f]+)+z"
# A label value of 50 letters and dashes with no `z`: `([a-z-]+)+z` backtracks 2^50 times on it.
LONG_VALUE = "abcdefghijklmnopqrstuvwxy-abcdefghijklmnopqrstuvwx"
PING_BOUND = 1.0  # seconds: liveness, not speed (speed is for bench/)
CONDITIONS = "Unable to find a node that satisfies the following conditions"


async def engine_ids(sandbox: Sandbox) -> set[str]:
    found: set[str] = set()
    for node in sandbox.nodes:
        out = await run_docker(node.docker_host, "ps", "-aq", "--no-trunc")
        found.update(out.stdout.split())
    return found


@pytest_asyncio.fixture(loop_scope="session")
async def anchors(manager3: Manager, sandbox3: Sandbox) -> AsyncIterator[set[str]]:
    """Six containers spread over the nodes (their IDs), so that every pattern has long
    hex IDs and a long label value to chew on; no container before or after the test."""
    await remove_all_containers(sandbox3)
    for i in range(6):
        out = await run_docker(manager3.tcp, "run", "-d", "--name", f"rx-box-{i}",
                               "--label", f"app={LONG_VALUE}", "busybox", "sleep", "300")
        assert out.returncode == 0, out.stderr
    ids = await engine_ids(sandbox3)
    assert len(ids) == 6
    try:
        yield ids
    finally:
        await remove_all_containers(sandbox3)


async def list_ids(session: aiohttp.ClientSession, base: str, filters: dict[str, list[str]]
                   ) -> tuple[int, set[str]]:
    url = f"{base}/containers/json?all=1&filters={quote(json.dumps(filters))}"
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        body = await resp.json()
        return resp.status, {c["Id"] for c in body}


async def pinger(session: aiohttp.ClientSession, base: str, stop: asyncio.Event,
                 latencies: list[float]) -> None:
    """`/_ping` over and over until told to stop (at most 2,000 times), timing each answer."""
    for _ in range(2000):
        start = time.monotonic()
        async with session.get(f"{base}/_ping",
                               timeout=aiohttp.ClientTimeout(total=PING_BOUND * 5)) as resp:
            assert resp.status == 200
            assert await resp.text() == "OK"
        latencies.append(time.monotonic() - start)
        if stop.is_set() and len(latencies) >= 20:
            return
        await asyncio.sleep(0.01)


async def test_regex_list_filters_answer_like_the_engine_and_ping_stays_live(
    manager3: Manager, sandbox3: Sandbox, anchors: set[str]
) -> None:
    # Engines look `id` values up as ID prefixes (then match them as regexes); shoal
    # follows classic Swarm (prefix or regex). These queries mean the same to both.
    one = sorted(anchors)[0]
    queries: list[dict[str, list[str]]] = [
        {"id": [EVIL_ID]},  # nothing matches, and Python's `re` never finishes
        {"id": [EVIL_ID, one[:12]]},
        {"name": ["(rx-[a-z]+)+-[135]"]},
        {"name": ["(?i)RX-BOX-[0-2]", "(a|a)*rx-box-4"]},
        {"name": ["([a-z-]+)+z"], "id": [EVIL_ID]},
    ]
    # The reference: the engines' own answers to the same queries, merged.
    expected: list[set[str]] = []
    async with aiohttp.ClientSession() as session:
        for query in queries:
            merged: set[str] = set()
            for node in sandbox3.nodes:
                status, ids = await list_ids(session, f"http://{node.addr}", query)
                assert status == 200, (node.name, query)
                merged |= ids
            expected.append(merged)
    assert expected[0] == set() and expected[1] == {one}
    assert len(expected[2]) == 3 and len(expected[3]) == 4

    latencies: list[float] = []
    stop = asyncio.Event()
    async with manager3.session() as session:
        ping_task = asyncio.create_task(pinger(session, manager3.url, stop, latencies))
        try:
            # Ten copies of the worst request at once, then the rest, with pings throughout.
            worst = await asyncio.gather(
                *(list_ids(session, manager3.url, queries[0]) for _ in range(10)))
            others = [await list_ids(session, manager3.url, q) for q in queries[1:]]
        finally:
            stop.set()
            await asyncio.wait_for(ping_task, 60)
    assert worst == [(200, set())] * 10
    assert [(200, ids) for ids in expected[1:]] == others

    print(f"/_ping during the regex filters: n={len(latencies)} "
          f"median={statistics.median(latencies) * 1e3:.1f} ms "
          f"max={max(latencies) * 1e3:.1f} ms "
          f"all={[round(x * 1e3, 1) for x in latencies]}")
    assert max(latencies) < PING_BOUND, manager3.log()


async def test_regex_rules_are_refused_promptly_with_swarms_text(
    manager3: Manager, sandbox3: Sandbox, anchors: set[str], docker_cli: DockerCli
) -> None:
    cases = [
        (f"affinity:container==/{EVIL_ID}/",
         f"[available container slots]\n[container==/{EVIL_ID}/ (soft=false)]"),
        ("affinity:app==/([a-z-]+)+z/",
         "[available container slots]\n[app==/([a-z-]+)+z/ (soft=false)]"),
        ("constraint:node==/([a-z-]+)+z/",
         "[available container slots]\n[node==/([a-z-]+)+z/]"),
    ]
    async with manager3.session() as session:
        for rule, listing in cases:
            start = time.monotonic()
            out = await docker_cli(manager3.tcp, "run", "-e", rule, "busybox", "true",
                                   timeout=30)
            took = time.monotonic() - start
            print(f"docker run -e {rule!r}: exit {out.returncode} in {took:.2f} s: {out.stderr!r}")
            assert out.returncode == 125, out.stdout + out.stderr
            assert f"{CONDITIONS} \n{listing}" in out.stderr, out.stderr
            async with session.get(f"{manager3.url}/_ping",
                                   timeout=aiohttp.ClientTimeout(total=PING_BOUND)) as resp:
                assert resp.status == 200

    # The same rules placed nowhere: only the anchors exist, on the engines and in `ps`.
    assert await engine_ids(sandbox3) == anchors
    listed = await docker_cli(manager3.tcp, "ps", "-aq", "--no-trunc")
    assert set(listed.stdout.split()) == anchors
    # A satisfiable regex affinity still places next to its anchor.
    out = await docker_cli(manager3.tcp, "run", "-d", "--name", "rx-friend", "-e",
                           "affinity:container==/^rx-box-(0|0)+$/", "busybox", "sleep", "300")
    assert out.returncode == 0, out.stderr
    nodes = await docker_cli(manager3.tcp, "inspect", "-f", "{{.Node.Name}}",
                             "rx-box-0", "rx-friend")
    first, second = nodes.stdout.split()
    assert first == second
