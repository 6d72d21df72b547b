"""Issue 11's pure pieces: swarm-mode routes, `/version`, engine paths built from the route."""

from __future__ import annotations

import json

import pytest

from shoal.api.http import HTTPError, Response, make_request
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.context import ApiContext
from shoal.api.primary.proxy import container_path
from shoal.api.primary.swarm import NOT_A_MANAGER, NOT_IN_SWARM
from shoal.api.primary.system import build_version
from shoal.cluster.cluster import Cluster, with_affinities
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.scheduler.scheduler import Scheduler


def handler() -> PrimaryHandler:
    return PrimaryHandler(ApiContext(Cluster(EngineSettings(), Scheduler(), EventBus())))


async def call(method: str, target: str) -> tuple[int, object]:
    response = await handler()(make_request(method, target))
    assert isinstance(response, Response)
    return response.status, json.loads(response.body)


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("POST", "/v1.41/swarm/leave?force=1", NOT_IN_SWARM),
        ("GET", "/swarm", NOT_A_MANAGER),
        ("GET", "/v1.41/swarm/unlockkey", NOT_A_MANAGER),
        ("GET", "/nodes", NOT_A_MANAGER),
        ("GET", "/nodes/abc", NOT_A_MANAGER),
        ("POST", "/services/create", NOT_A_MANAGER),
        ("GET", "/services/web/logs", NOT_A_MANAGER),
        ("DELETE", "/secrets/s1", NOT_A_MANAGER),
        ("GET", "/tasks", NOT_A_MANAGER),
        ("POST", "/configs/c1/update", NOT_A_MANAGER),
    ],
)
async def test_swarm_mode_routes_answer_as_an_engine_outside_a_swarm(
    method: str, target: str, message: str
) -> None:
    assert await call(method, target) == (503, {"message": message})


async def test_swarm_init_without_a_healthy_engine_is_the_schedulers_500() -> None:
    status, body = await call("POST", "/swarm/init")
    assert status == 500
    assert "No healthy node" in str(body)


async def test_swarm_join_is_refused_not_forwarded() -> None:
    status, body = await call("POST", "/swarm/join")
    assert status == 501
    assert "joining a swarm is not supported" in str(body)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/plugins"),
        ("GET", "/plugins/privileges?remote=x"),
        ("GET", "/v1.41/plugins/vieux/sshfs:latest/json"),
        ("POST", "/plugins/vieux/sshfs:latest/enable"),
        ("DELETE", "/plugins/x"),
    ],
)
async def test_plugin_routes_are_served_not_404(method: str, target: str) -> None:
    # No engine at all: the scheduler's 500, which shows the route reached a handler.
    status, body = await call(method, target)
    assert status == 500
    assert "No healthy node" in str(body)


def test_version_is_classic_swarms_with_shoal_beside_it() -> None:
    cluster = Cluster(EngineSettings(), Scheduler(), EventBus())
    answer = build_version(ApiContext(cluster))
    assert answer["Version"] == "swarm/1.2.9"
    assert answer["Platform"]["Name"].startswith("shoal/")
    engine, shoal = answer["Components"]
    assert (engine["Name"], engine["Version"]) == ("Engine", "swarm/1.2.9")
    assert shoal["Name"] == "shoal"
    # The Go client decodes Details as map[string]string.
    assert all(isinstance(v, str) for v in engine["Details"].values())


@pytest.mark.parametrize("name", ["co", "on", "ers", "tainer", "containers", "json"])
async def test_container_path_replaces_the_route_part_only(name: str) -> None:
    request = make_request("POST", f"/v1.41/containers/{name}/stop?t=1")
    assert container_path(request, name, "f" * 64) == f"/containers/{'f' * 64}/stop"


async def test_container_path_refuses_a_name_not_in_the_path() -> None:
    with pytest.raises(HTTPError):
        container_path(make_request("GET", "/containers/abc/json"), "other", "f" * 64)


def test_scheduling_affinities_leave_the_config_alone() -> None:
    config = {"Image": "x", "Labels": {"a": "b"}}
    scheduled = with_affinities(config, ["image==x"])
    assert json.loads(scheduled["Labels"]["com.docker.swarm.affinities"]) == ["image==x"]
    assert config == {"Image": "x", "Labels": {"a": "b"}}
    assert with_affinities(config, []) is config
