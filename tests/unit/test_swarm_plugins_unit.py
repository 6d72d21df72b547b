"""Swarm-mode passthrough and managed plugins: the pure rules (which creates need a
swarm manager, which `/info` names one, how copies of a plugin merge)."""

from __future__ import annotations

import pytest

from shoal.api.http import HTTPError
from shoal.api.primary.networks import needs_swarm
from shoal.api.primary.plugins import enabled_wanted, merged, plugin_path
from shoal.api.primary.swarm_mode import MAX_AGE, SwarmMode, is_manager
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.scheduler.scheduler import Scheduler


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Name": "n"}, False),
        ({"Name": "n", "Driver": "bridge"}, False),
        ({"Name": "n", "Scope": "local"}, False),
        ({"Name": "n", "Driver": "overlay"}, True),
        ({"Name": "n", "Driver": "overlay", "Scope": "swarm"}, True),
        ({"Name": "n", "Driver": "overlay", "Scope": "global"}, False),
        ({"Name": "n", "Driver": "overlay", "Scope": "local"}, False),
        ({"Name": "n", "Scope": "swarm"}, True),
        ({"Name": "n", "Ingress": True}, True),
        ({"Name": "n", "Attachable": True}, True),
        ({"Name": "n", "Attachable": False, "Ingress": False}, False),
    ],
)
def test_needs_swarm(body: dict[str, object], expected: bool) -> None:
    assert needs_swarm(body) is expected


@pytest.mark.parametrize(
    ("swarm", "expected"),
    [
        ({"LocalNodeState": "active", "ControlAvailable": True}, True),
        ({"LocalNodeState": "active", "ControlAvailable": False}, False),  # a worker
        ({"LocalNodeState": "inactive", "ControlAvailable": False}, False),
        ({"LocalNodeState": "pending", "ControlAvailable": True}, False),
        (None, False),
    ],
)
def test_is_manager_reads_info(swarm: object, expected: bool) -> None:
    assert is_manager({"Swarm": swarm}) is expected
    assert is_manager(None) is False


async def test_swarm_mode_asks_again_only_when_stale_or_changed() -> None:
    now = [100.0]
    mode = SwarmMode(clock=lambda: now[0])
    cluster = Cluster(EngineSettings(), Scheduler(), EventBus())
    assert await mode.manager_engine(cluster) is None
    assert mode.checked == 100.0
    now[0] += MAX_AGE / 2
    assert await mode.manager_engine(cluster) is None
    assert mode.checked == 100.0  # still fresh: not asked again
    mode.changed()
    assert await mode.manager_engine(cluster) is None
    assert mode.checked == now[0]


def test_merged_plugin_is_enabled_only_where_every_copy_is() -> None:
    a = {"Name": "p:latest", "Id": "a", "Enabled": True}
    b = {"Name": "p:latest", "Id": "b", "Enabled": False}
    assert merged([a, b]) == {"Name": "p:latest", "Id": "a", "Enabled": False}
    assert merged([a, dict(a, Id="c")])["Enabled"] is True
    assert a["Enabled"] is True  # the engine's copy is left alone


def test_plugin_path_keeps_the_name_readable() -> None:
    assert plugin_path("vieux/sshfs:latest", "json") == "/plugins/vieux/sshfs:latest/json"
    assert plugin_path("a b") == "/plugins/a%20b"


def test_enabled_filter_reads_as_the_engines() -> None:
    assert enabled_wanted(["true"]) is True
    assert enabled_wanted(["false"]) is False
    assert enabled_wanted(["false", "true"]) is True
    for bad in (["1"], ["TRUE"], ["xyz"]):
        with pytest.raises(HTTPError) as err:
            enabled_wanted(bad)
        expected = (400, f"Invalid filter 'enabled=[{bad[0]}]'")
        assert (err.value.status, err.value.message) == expected
