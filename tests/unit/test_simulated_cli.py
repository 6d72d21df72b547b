"""`shoal sandbox up --simulated`: option checks, and the foreground run it starts."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from click.testing import CliRunner

from shoal.cli import build_cli
from shoal.sandbox.cli import sandbox_simulated


@pytest.mark.parametrize("args", [["sandbox", "up"],
                                  ["sandbox", "up", "-n", "2", "--simulated", "3"]])
def test_nodes_or_simulated_exactly_one(args: list[str]) -> None:
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 2
    assert "exactly one of -n/--nodes and --simulated" in result.output


def test_bad_label_is_fatal() -> None:
    result = CliRunner().invoke(build_cli(), ["sandbox", "up", "--simulated", "2",
                                              "--label", "oops"])
    assert result.exit_code == 1
    assert "label must be [node-I:]KEY=VALUE" in result.output


async def test_foreground_run_prints_discovery_and_gaps() -> None:
    lines: list[str] = []
    stop = asyncio.Event()
    run = asyncio.create_task(sandbox_simulated(
        3, 4, ["node-1:gpu=1"], emit=lines.append, seed=2, stop=stop))
    try:
        for _ in range(100):
            if lines or run.done():
                break
            await asyncio.sleep(0.05)
        assert lines and lines[0].startswith("discovery: nodes://127.0.0.1:[")
        first = int(lines[0].split("[", 1)[1].split(":", 1)[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{first + 1}/info") as resp:
                info = await resp.json()
            async with session.get(f"http://127.0.0.1:{first}/v1.41/plugins") as resp:
                assert resp.status == 501
    finally:
        stop.set()
        gaps = await asyncio.wait_for(run, 10)
    assert info["Name"] == "node-1" and "gpu=1" in info["Labels"]
    assert info["Containers"] == 4
    assert gaps == {"GET /plugins": 1}
    assert lines[-1].endswith("unimplemented (501): GET /plugins x1")
