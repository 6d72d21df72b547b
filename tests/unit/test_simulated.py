"""The simulated engines' state, documents and events, and their HTTP routing."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from shoal.sandbox.simulated import SimEngine, SimError, SimServer, engine_spec
from shoal.sandbox.simulated.model import normalize_ref, parse_time_nano
from shoal.sandbox.simulated.records import key_id
from shoal.sandbox.simulated.server import (
    bind_range,
    container_matches,
    event_matches,
    parse_filters,
)

# Key sets of what a real dockerd 20.10.24 answered on this machine.
REAL_INSPECT_KEYS = {
    "AppArmorProfile", "Args", "Config", "Created", "Driver", "ExecIDs", "GraphDriver",
    "HostConfig", "HostnamePath", "HostsPath", "Id", "Image", "LogPath", "MountLabel", "Mounts",
    "Name", "NetworkSettings", "Path", "Platform", "ProcessLabel", "ResolvConfPath",
    "RestartCount", "State"}
REAL_STATE_KEYS = {"Dead", "Error", "ExitCode", "FinishedAt", "OOMKilled", "Paused", "Pid",
                   "Restarting", "Running", "StartedAt", "Status"}
REAL_CONFIG_KEYS = {
    "AttachStderr", "AttachStdin", "AttachStdout", "Cmd", "Domainname", "Entrypoint", "Env",
    "Hostname", "Image", "Labels", "OnBuild", "OpenStdin", "StdinOnce", "Tty", "User",
    "Volumes", "WorkingDir"}
REAL_HOST_CONFIG_KEYS = {
    "AutoRemove", "Binds", "BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps", "BlkioWeight", "BlkioWeightDevice", "CapAdd", "CapDrop", "Cgroup",
    "CgroupParent", "CgroupnsMode", "ConsoleSize", "ContainerIDFile", "CpuCount", "CpuPercent",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuShares",
    "CpusetCpus", "CpusetMems", "DeviceCgroupRules", "DeviceRequests", "Devices", "Dns",
    "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IOMaximumBandwidth", "IOMaximumIOps",
    "IpcMode", "Isolation", "KernelMemory", "KernelMemoryTCP", "Links", "LogConfig",
    "MaskedPaths", "Memory", "MemoryReservation", "MemorySwap", "MemorySwappiness", "NanoCpus",
    "NetworkMode", "OomKillDisable", "OomScoreAdj", "PidMode", "PidsLimit", "PortBindings",
    "Privileged", "PublishAllPorts", "ReadonlyPaths", "ReadonlyRootfs", "RestartPolicy",
    "Runtime", "SecurityOpt", "ShmSize", "UTSMode", "Ulimits", "UsernsMode", "VolumeDriver",
    "VolumesFrom"}
REAL_LIST_KEYS = {"Command", "Created", "HostConfig", "Id", "Image", "ImageID", "Labels",
                  "Mounts", "Names", "NetworkSettings", "Ports", "State", "Status"}
REAL_VERSION_KEYS = {"ApiVersion", "Arch", "BuildTime", "Components", "GitCommit", "GoVersion",
                     "KernelVersion", "MinAPIVersion", "Os", "Platform", "Version"}


class Clock:
    """Nanoseconds that advance only when told, so event times are exact."""

    def __init__(self, start: int = 1_700_000_000 * 10**9) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> SimEngine:
    return SimEngine(engine_spec(3, seed=1), containers=20, seed=1, clock=clock)


def test_daemon_id_has_dockerds_key_format() -> None:
    ident = key_id("x")
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", ident)
    assert key_id("x") == ident and key_id("y") != ident


def test_engines_differ_and_are_reproducible() -> None:
    specs = [engine_spec(i, seed=5) for i in range(50)]
    assert specs == [engine_spec(i, seed=5) for i in range(50)]
    assert len({s.daemon_id for s in specs}) == 50
    assert len({s.cpus for s in specs}) > 1
    assert specs[7].name == "node-7"
    assert all(s.memory > 0 and s.cpus > 0 for s in specs)


def test_generated_containers_look_like_dockerds(engine: SimEngine) -> None:
    assert len(engine.containers) == 20
    states = {c.status for c in engine.containers.values()}
    assert states == {"running", "exited"}
    for c in engine.containers.values():
        doc = engine.inspect(c)
        assert set(doc) == REAL_INSPECT_KEYS
        assert set(doc["State"]) == REAL_STATE_KEYS
        assert set(doc["Config"]) == REAL_CONFIG_KEYS
        assert set(doc["HostConfig"]) == REAL_HOST_CONFIG_KEYS
        assert doc["State"]["Running"] == (c.status == "running")
        assert doc["Name"] == "/" + c.name
        assert doc["HostConfig"]["Memory"] == c.memory
        assert bool(doc["NetworkSettings"]["IPAddress"]) == (c.status == "running")
        entry = engine.summary(c, now=1_700_000_000)
        assert set(entry) == REAL_LIST_KEYS
        assert entry["Names"] == ["/" + c.name] and entry["State"] == c.status
        json.dumps(doc)
    assert set(engine.version()) == REAL_VERSION_KEYS
    info = engine.info()
    assert info["ContainersRunning"] + info["ContainersStopped"] == 20
    assert info["Name"] == "node-3" and info["ID"] == engine.spec.daemon_id


def test_lifecycle_emits_dockerds_events_in_order(engine: SimEngine, clock: Clock) -> None:
    clock.now += 10**9
    start = clock.now
    c = engine.create("app-1", {"Image": "busybox", "Cmd": ["sleep", "9"],
                                "Labels": {"a": "b"}, "HostConfig": {"Memory": 1 << 24}})
    assert engine.start(c.id) is True
    assert engine.start(c.id) is False  # already running: 304
    engine.rename("app-1", "app-2")
    assert engine.find("app-2") is c and "app-1" not in engine.by_name
    assert engine.stop("app-2") is True and c.status == "exited"
    engine.remove(c.id, force=False, volumes=False)
    actions = [(e["Type"], e["Action"]) for e in engine.history(start, 0)]
    assert actions == [
        ("container", "create"), ("network", "connect"), ("container", "start"),
        ("container", "rename"), ("container", "kill"), ("container", "die"),
        ("network", "disconnect"), ("container", "stop"), ("container", "destroy")]
    nanos = [e["timeNano"] for e in engine.history(start, 0)]
    assert nanos == sorted(set(nanos))  # unique and increasing under a frozen clock
    create = engine.history(start, 0)[0]
    assert create["Actor"]["Attributes"] == {"a": "b", "image": "busybox", "name": "app-1"}
    assert create["id"] == c.id and create["status"] == "create"
    # `since` is inclusive, `until` too.
    assert [e["Action"] for e in engine.history(nanos[3], nanos[4])] == ["rename", "kill"]


def test_errors_answer_like_dockerd(engine: SimEngine) -> None:
    engine.create("one", {"Image": "busybox:latest"})
    cases = [
        (lambda: engine.create("one", {"Image": "busybox"}), 409),
        (lambda: engine.create("bad name", {"Image": "busybox"}), 400),
        (lambda: engine.create("xy", {"Image": "nosuch:1"}), 404),
        (lambda: engine.find("nope"), 404),
        (lambda: engine.kill("one"), 409),
        (lambda: engine.unpause("one"), 409),
    ]
    for call, status in cases:
        with pytest.raises(SimError) as err:
            call()
        assert err.value.status == status
    engine.start("one")
    with pytest.raises(SimError) as err:
        engine.remove("one", force=False, volumes=False)
    assert err.value.status == 409
    engine.remove("one", force=True, volumes=False)
    assert "one" not in engine.by_name


def test_pull_adds_an_image_once(engine: SimEngine) -> None:
    before = len(engine.images)
    messages = engine.pull("docker.io/library/alpine", "3.19")
    assert messages[-1]["status"].startswith("Status: Downloaded newer image")
    assert engine.find_image("alpine:3.19") is not None
    assert engine.pull("alpine", "3.19")[-1]["status"].startswith("Status: Image is up to date")
    assert len(engine.images) == before + 1


def test_time_parameters() -> None:
    assert parse_time_nano("12") == 12 * 10**9
    assert parse_time_nano("12.5") == 12_500_000_000
    assert parse_time_nano("1700000000.000000001") == 1_700_000_000_000_000_001
    assert parse_time_nano("2023-11-14T22:13:20Z") == 1_700_000_000 * 10**9
    with pytest.raises(SimError):
        parse_time_nano("yesterday")


def test_refs_and_filters() -> None:
    assert normalize_ref("busybox") == "busybox:latest"
    assert normalize_ref("docker.io/library/redis:7") == "redis:7"
    assert normalize_ref("registry:5000/x") == "registry:5000/x:latest"
    assert parse_filters('{"status": ["running"], "label": {"a=b": true}}') == {
        "status": ["running"], "label": ["a=b"]}
    with pytest.raises(SimError):
        parse_filters("[1]")
    labels = {"a": "b", "c": ""}
    assert container_matches("abc", "web", "running", labels, {"label": ["a=b", "c"]})
    assert not container_matches("abc", "web", "running", labels, {"label": ["a=x"]})
    assert not container_matches("abc", "web", "exited", labels, {"status": ["running"]})
    assert container_matches("abc", "web-1", "exited", labels, {"id": ["ab"], "name": ["web"]})
    event = {"Type": "container", "Action": "start", "Actor": {"ID": "abc",
                                                               "Attributes": {"name": "web"}}}
    assert event_matches(event, {"type": ["container"], "event": ["start"],
                                 "container": ["web"]})
    assert not event_matches(event, {"type": ["image"]})


def test_routes_and_gaps() -> None:
    server = SimServer([])
    handler, args, shape = server._match("GET", ["containers", "abc", "json"])
    assert handler is not None and args == ["abc"]
    handler, args, _ = server._match("GET", ["images", "registry:5000", "x:1", "json"])
    assert handler is not None and args == ["registry:5000/x:1"]
    handler, args, _ = server._match("DELETE", ["containers", "abc"])
    assert handler is not None and args == ["abc"]
    handler, _, shape = server._match("POST", ["containers", "abc", "attach"])
    assert handler is None and shape == "containers/*/attach"


def test_bind_range_skips_taken_ports() -> None:
    first = bind_range(1)
    taken = first[0].getsockname()[1]
    try:
        sockets = bind_range(3, low=taken)
        ports = [s.getsockname()[1] for s in sockets]
        for s in sockets:
            s.close()
    finally:
        first[0].close()
    assert ports[0] > taken and ports == list(range(ports[0], ports[0] + 3))


async def test_served_engines_stream_events_and_count_gaps() -> None:
    engines = [SimEngine(engine_spec(i), containers=3) for i in range(2)]
    server = SimServer(engines)
    await server.start()
    try:
        assert server.discovery == f"nodes://127.0.0.1:[{server.ports[0]}:{server.ports[1]}]"
        base = f"http://127.0.0.1:{server.ports[1]}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/v1.41/info") as resp:
                assert (await resp.json())["Name"] == "node-1"
            async with session.post(base + "/v1.41/containers/create?name=ev",
                                    json={"Image": "busybox"}) as resp:
                assert resp.status == 201
                cid = (await resp.json())["Id"]
            nano = engines[1].events[0][0]
            since = f"{nano // 10**9}.{nano % 10**9:09d}"
            async with session.get(base + "/events", params={"since": since}) as ev:
                first = json.loads(await asyncio.wait_for(ev.content.readline(), 5))
                assert first["Action"] == "create" and first["id"] == cid
                async with session.post(base + f"/containers/{cid}/start") as resp:
                    assert resp.status == 204
                live = [json.loads(await asyncio.wait_for(ev.content.readline(), 5))
                        for _ in range(2)]
                assert [e["Action"] for e in live] == ["connect", "start"]
            async with session.get(base + "/v1.41/containers/nope/json") as resp:
                assert resp.status == 404
                assert (await resp.json()) == {"message": "No such container: nope"}
            async with session.get(base + "/v1.41/swarm") as resp:
                assert resp.status == 501
            async with session.get(base + "/_sim/stats") as resp:
                assert (await resp.json())["unknown"] == {"GET /swarm": 1}
    finally:
        await server.stop()


def test_wait_conditions_wake_on_exit_or_removal(engine: SimEngine) -> None:
    c = engine.create("waited", {"Image": "busybox"})
    engine.start(c.id)
    woken: list[tuple[str, int]] = []
    for condition in ("not-running", "removed"):
        engine.waiters.setdefault(c.id, []).append(
            (condition, lambda code, cond=condition: woken.append((cond, code))))
    engine.kill(c.id)
    assert woken == [("not-running", 137)]
    engine.remove(c.id, force=False, volumes=False)
    assert woken == [("not-running", 137), ("removed", 137)]
    assert c.id not in engine.waiters
