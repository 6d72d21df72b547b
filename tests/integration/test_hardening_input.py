"""Issue 12, item 2: bodies of the wrong types are refused as the engine refuses them.

Each bad body goes to shoal and to one of its engines directly: shoal must answer 400 with
the engine's own message (dockerd 20.10 answers 500 for some of them; current engines and
shoal answer 400), and nothing may appear on any engine. A hypothesis test then sends
generated create bodies of wrong types, nesting and sizes: always a 400 (or 413 for a body
over the size limit), nothing created, and the manager's memory back within 50 MB.

`SHOAL_FUZZ_RUNS=5000` runs more generated examples than CI's default.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import tarfile
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.sandbox import Sandbox
from tests.integration.conftest import run_docker, sandbox_tag
from tests.integration.manager import Manager, running_manager

ON_LOOP = pytest.mark.asyncio(loop_scope="session")
RUNS = int(os.environ.get("SHOAL_FUZZ_RUNS", "250"))
RSS_SLACK = 50 * 2**20
JSON = "application/json"
V = "/v1.41"
GO_MESSAGE = re.compile(
    r"json: cannot unmarshal \S+( \S+)? into Go (struct field \S+|value) of type .+"
    r"|invalid character .+|unexpected EOF"
)


class Cluster:
    """Two sandbox engines, the manager over them, and one running container of theirs."""

    def __init__(self, sandbox: Sandbox, manager: Manager, box: str) -> None:
        self.sandbox = sandbox
        self.manager = manager
        self.box = box  # full ID of a running busybox

    @property
    def engine_ports(self) -> list[int]:
        return [node.host_port for node in self.sandbox.nodes]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(host_ready: None) -> AsyncIterator[Cluster]:
    sandbox = Sandbox(2, tag=sandbox_tag(__name__, "u"), registry=False)
    async with sandbox, running_manager(sandbox.discovery, nodes=2) as mgr:
        out = await run_docker(mgr.tcp, "run", "-d", "--name", "in-box", "busybox",
                               "sleep", "600")
        assert out.returncode == 0, out.stderr
        yield Cluster(sandbox, mgr, out.stdout.strip())


def request(port: int, method: str, path: str, body: bytes | None = None,
            content_type: str | None = JSON) -> tuple[int, str]:
    """One request with a fresh connection; the answer's status and message (or body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        decoded = json.loads(data)
    except ValueError:
        return resp.status, data.decode(errors="replace")
    if isinstance(decoded, dict) and "message" in decoded:
        return resp.status, str(decoded["message"])
    return resp.status, data.decode(errors="replace")


def engine_state(ports: list[int]) -> list[Any]:
    """Everything a bad request could have made, asked of each engine directly."""
    state: list[Any] = []
    for port in ports:
        for path, key in (("/containers/json?all=1", "Id"), ("/networks", "Id"),
                          ("/images/json", "Id")):
            status, text = request(port, "GET", path)
            assert status == 200, text
            state.append(sorted(item[key] for item in json.loads(text)))
        status, text = request(port, "GET", "/volumes")
        assert status == 200, text
        state.append(sorted(v["Name"] for v in json.loads(text)["Volumes"] or []))
    return state


def box_port(cluster: Cluster) -> int:
    """The engine that runs the cluster's container (found by asking each)."""
    for port in cluster.engine_ports:
        if request(port, "GET", f"/containers/{cluster.box}/json")[0] == 200:
            return port
    raise AssertionError("the test container is on no engine")


def bad_bodies(box: str) -> list[tuple[str, bytes, str | None]]:
    """(path, body, Content-Type): the issue's examples and their relatives on each route."""
    create = f"{V}/containers/create"
    cases: list[tuple[str, bytes, str | None]] = [
        (create, b'{"Image":"busybox","HostConfig":{"CpuShares":"abc"}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"CpuShares":"10"}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"Binds":5}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"Memory":NaN}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"Links":[5]}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"Memory":1e23}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"Memory":1.0}}', JSON),
        (create, b'{"Image":"busybox","Memory":"1"}', JSON),
        (create, b'{"Image":5}', JSON),
        (create, b'{"Image":"busybox","Env":"A=1"}', JSON),
        (create, b'{"Image":"busybox","Cmd":[5]}', JSON),
        (create, b'{"Image":"busybox","Labels":{"a":1}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":[]}', JSON),
        (create, b'{"Image":"busybox","ExposedPorts":{"80/tcp":1}}', JSON),
        (create, b'{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":80}]}}}',
         JSON),
        (create, b'{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":1}}}}',
         JSON),
        (create, b"[]", JSON),
        (create, b"null", JSON),
        (create, b"", JSON),
        (create, b'{"Image":"busybox"', JSON),
        (create, b'{"Image":"busybox"}', "text/plain"),
        (create, b'{"Image":"busybox"}', None),
        (create, '{"Image":"busybox"}'.encode("utf-16"), JSON),
        (create, '{"Image":"busybox"}'.encode("utf-16-le"), JSON),
        (f"{V}/volumes/create", b'{"Name":1.5}', JSON),
        (f"{V}/volumes/create", b'{"Name":"vol-x","Labels":{"a":1}}', JSON),
        (f"{V}/volumes/create", b'{"Name":"vol-x"}', "text/plain"),
        (f"{V}/volumes/create", b"", JSON),
        (f"{V}/networks/create", b'{"Name":5}', JSON),
        (f"{V}/networks/create", b'{"Name":"net-x","Internal":"yes"}', JSON),
        (f"{V}/networks/create", b'{"Name":"net-x","IPAM":{"Config":[{"Subnet":5}]}}', JSON),
        (f"{V}/networks/create", '{"Name":"net-x"}'.encode("utf-16"), JSON),
        (f"{V}/containers/{box}/update", b'{"CpuShares":"512"}', JSON),
        (f"{V}/containers/{box}/update", b'{"RestartPolicy":{"MaximumRetryCount":"x"}}', JSON),
        (f"{V}/containers/{box}/update", b"[]", JSON),
        (f"{V}/containers/{box}/update", b'{"CpuShares":512}', "text/plain"),
        (f"{V}/containers/{box}/exec", b'{"Cmd":"ls"}', JSON),
        (f"{V}/containers/{box}/exec", b'{"Cmd":["ls"],"Tty":1}', JSON),
        (f"{V}/containers/{box}/exec", b'{"Cmd":["ls"]}', "text/plain"),
        (f"{V}/containers/{box}/exec", b"", JSON),
    ]
    return cases


@ON_LOOP
async def test_bad_bodies_answer_400_with_the_engines_message(cluster: Cluster) -> None:
    engine = box_port(cluster)
    before = engine_state(cluster.engine_ports)
    wrong: list[str] = []
    for path, body, content_type in bad_bodies(cluster.box):
        engine_status, engine_message = request(engine, "POST", path, body, content_type)
        status, message = request(cluster.manager.port, "POST", path, body, content_type)
        # The reference: the engine refuses the body too (with 400, or 20.10's 500).
        assert engine_status in (400, 500), (path, body, engine_status, engine_message)
        if status != 400 or message != engine_message:
            wrong.append(f"{path} {body[:60]!r} {content_type}: shoal {status} {message!r}, "
                         f"engine {engine_status} {engine_message!r}")
    assert not wrong, "\n".join(wrong)
    assert engine_state(cluster.engine_ports) == before
    assert "Traceback" not in cluster.manager.log()


@ON_LOOP
async def test_good_bodies_still_pass(cluster: Cluster) -> None:
    """The checks refuse only what the engine refuses: parameters, nulls, and case-folded keys."""
    port = cluster.manager.port
    status, text = request(port, "POST", f"{V}/containers/{cluster.box}/update",
                           b'{"CpuShares":512,"RestartPolicy":null}',
                           "application/json; charset=utf-8")
    assert status == 200, text
    status, text = request(port, "POST", f"{V}/containers/{cluster.box}/exec",
                           b'{"Cmd":["true"],"Env":null,"tty":false}', JSON)
    assert status == 201, text
    status, text = request(port, "POST", f"{V}/containers/create?name=in-good",
                           b'{"Image":"busybox","Cmd":"true","Labels":{"a":null},'
                           b'"HostConfig":{"Memory":0,"CpuShares":2}}', JSON)
    assert status == 201, text
    out = await run_docker(cluster.manager.tcp, "rm", "-f", "in-good")
    assert out.returncode == 0, out.stderr


def build_context() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = b"FROM busybox\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@ON_LOOP
async def test_bad_build_options_answer_400_with_the_engines_message(cluster: Cluster) -> None:
    engine = cluster.engine_ports[0]
    before = engine_state(cluster.engine_ports)
    context = build_context()
    for query in ("buildargs=%5B1%5D", "buildargs=%7B%22a%22%3A1%7D", "buildargs=%7Bx",
                  "labels=%5B1%5D", "labels=%7B%22a%22%3A1%7D", "labels=NaN"):
        path = f"{V}/build?t=in-build-x&{query}"
        engine_status, engine_message = request(engine, "POST", path, context,
                                                "application/x-tar")
        status, message = request(cluster.manager.port, "POST", path, context,
                                  "application/x-tar")
        assert engine_status == 400, (query, engine_message)
        assert (status, message) == (400, engine_message), query
    assert engine_state(cluster.engine_ports) == before


# --- generated bodies ---------------------------------------------------------------------

ANY_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
ANY = st.recursive(
    ANY_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=4),
    max_leaves=12,
)
NOT_STRING = st.booleans() | st.integers() | st.floats() | st.lists(ANY, max_size=3) | \
    st.dictionaries(st.text(max_size=4), ANY, max_size=3)
NOT_INT = (
    st.text(max_size=20)
    | st.floats()
    | st.booleans()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.integers(min_value=2**63, max_value=2**300)
    | st.integers(min_value=-(2**300), max_value=-(2**63) - 1)
)
NOT_STRINGS = (
    st.text(max_size=10)
    | st.integers()
    | st.dictionaries(st.text(max_size=3), ANY, max_size=3)
    | st.lists(NOT_STRING, min_size=1, max_size=3)
)
NOT_STRING_MAP = (
    st.lists(ANY, max_size=3)
    | st.text(max_size=10)
    | st.integers()
    | st.dictionaries(st.text(max_size=5), NOT_STRING, min_size=1, max_size=3)
)
NOT_STRUCT = st.integers() | st.text(max_size=10) | st.lists(ANY, max_size=3) | st.booleans()
NOT_STRSLICE = (
    st.integers() | st.booleans() | st.dictionaries(st.text(max_size=3), ANY, max_size=3)
    | st.lists(NOT_STRING, min_size=1, max_size=3)
)
POISONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("HostConfig", "CpuShares"), NOT_INT),
    (("HostConfig", "Memory"), NOT_INT),
    (("HostConfig", "NanoCpus"), NOT_INT),
    (("Memory",), NOT_INT),
    (("CpuShares",), NOT_INT),
    (("Image",), NOT_STRING),
    (("HostConfig", "NetworkMode"), NOT_STRING),
    (("Env",), NOT_STRINGS),
    (("HostConfig", "Binds"), NOT_STRINGS),
    (("HostConfig", "Links"), NOT_STRINGS),
    (("HostConfig", "VolumesFrom"), NOT_STRINGS),
    (("Labels",), NOT_STRING_MAP),
    (("HostConfig", "Sysctls"), NOT_STRING_MAP),
    (("HostConfig",), NOT_STRUCT),
    (("NetworkingConfig",), NOT_STRUCT),
    (("HostConfig", "RestartPolicy"), NOT_STRUCT),
    (("HostConfig", "RestartPolicy", "MaximumRetryCount"), NOT_INT),
    (("HostConfig", "PortBindings"), st.lists(ANY, max_size=2) | st.text(max_size=4)),
    (("Cmd",), NOT_STRSLICE),
    (("Entrypoint",), NOT_STRSLICE),
]


DEEP = re.compile(r'"deep:(\d+)"')


def nested(depth: int) -> str:
    """A marker that `encode` turns into `depth` nested arrays (too deep to print or dump)."""
    return f"deep:{depth}"


def encode(body: dict[str, Any]) -> bytes:
    text = json.dumps(body)
    return DEEP.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text).encode()


# Big and deep fillers that are not errors in themselves (unknown fields are ignored).
SIZED = (
    st.builds(lambda n: "x" * n, st.integers(0, 1 << 20))
    | st.builds(lambda n: ["a"] * n, st.integers(0, 20000))
    | st.builds(lambda n: {f"k{i}": "v" for i in range(n)}, st.integers(0, 5000))
    | st.builds(nested, st.integers(1, 3000))
)
FILLER = st.dictionaries(
    st.sampled_from(["Image", "Env", "Labels", "Cmd", "Xtra", "Deep", "HostConfig"])
    | st.text(max_size=6),
    ANY | SIZED,
    max_size=4,
)


@st.composite
def poisoned_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A create body with at least one field of a wrong type, among fillers of any size."""
    body: dict[str, Any] = draw(FILLER)
    if draw(st.booleans()):
        body["Image"] = "busybox"  # would create, but for the poison
    path, bad = draw(st.sampled_from(POISONS))
    target = body
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = draw(bad)
    return body


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_generated_bad_create_bodies(cluster: Cluster) -> None:
    manager = cluster.manager
    assert manager.proc is not None
    pid = manager.proc.pid
    before = engine_state(cluster.engine_ports)
    rss_before = rss(pid)
    seen: list[int] = []

    @settings(max_examples=RUNS, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(poisoned_bodies())
    def check(body: dict[str, Any]) -> None:
        raw = encode(body)
        status, message = request(manager.port, "POST", f"{V}/containers/create", raw)
        seen.append(status)
        assert status in (400, 413), (status, message, raw[:300])
        if status == 400:
            assert GO_MESSAGE.fullmatch(message) or "too deep" in message.lower() \
                or "depth" in message.lower(), (message, raw[:300])

    check()
    assert len(seen) >= min(RUNS, 50)
    assert engine_state(cluster.engine_ports) == before
    deadline = time.monotonic() + 15
    while rss(pid) > rss_before + RSS_SLACK and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rss(pid) <= rss_before + RSS_SLACK, (rss_before, rss(pid))
    assert request(manager.port, "GET", "/_ping")[0] == 200
