"""Issue 12: malformed HTTP never hurts the manager or the engines behind it.

Hypothesis builds requests with broken heads (methods, targets, versions, header lines,
line ends), broken bodies (lengths, chunking) and broken JSON, and sends the same bytes over
a raw socket to the manager and to one engine. The manager may refuse anything, but a 5xx
from it must be one the engine gives for the same bytes too; it must keep answering
`/_ping`; and no engine may change (containers, networks, volumes, images).

Targets are chosen so that no well-formed request among them could create or delete
anything: bodies for the create routes always carry a field of the wrong type.
`SHOAL_FUZZ_RUNS=5000` runs more examples than CI's default.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.sandbox import Sandbox
from tests.integration.conftest import sandbox_tag
from tests.integration.manager import Manager, running_manager

RUNS = int(os.environ.get("SHOAL_FUZZ_RUNS", "200"))
FIRST_ANSWER = 0.6  # seconds to wait before the client half-closes its side
AFTER_CLOSE = 1.0  # seconds to wait for an answer after that


class Cluster:
    def __init__(self, sandbox: Sandbox, manager: Manager) -> None:
        self.sandbox = sandbox
        self.manager = manager


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(host_ready: None) -> AsyncIterator[Cluster]:
    sandbox = Sandbox(2, tag=sandbox_tag(__name__, "u"), registry=False)
    async with sandbox, running_manager(sandbox.discovery, nodes=2) as mgr:
        yield Cluster(sandbox, mgr)


def exchange(port: int, data: bytes) -> int | None:
    """Send `data` on a fresh connection; the status of the first answer, or None if the
    peer closed or stayed silent (after a half-close, bounded)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
        except OSError:
            return None  # the server closed while we were still sending
        deadline = time.monotonic() + FIRST_ANSWER
        closed_write = False
        while b"\r\n" not in received and b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if closed_write:
                    return None
                closed_write = True
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    return None
                deadline = time.monotonic() + AFTER_CLOSE
                continue
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                break
            received += chunk
    parts = received.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1][:3].isdigit():
        return int(parts[1][:3])
    return None


def get_json(port: int, path: str) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    return json.loads(body)


def engine_state(sandbox: Sandbox) -> list[Any]:
    state: list[Any] = []
    for node in sandbox.nodes:
        port = node.host_port
        state.append(sorted(c["Id"] for c in get_json(port, "/containers/json?all=1")))
        state.append(sorted(n["Id"] for n in get_json(port, "/networks")))
        state.append(sorted(i["Id"] for i in get_json(port, "/images/json")))
        state.append(sorted(v["Name"] for v in get_json(port, "/volumes")["Volumes"] or []))
    return state


# --- requests -----------------------------------------------------------------------------

SAFE_TARGETS = [
    "/_ping", "/v1.41/_ping", "/v99.0/_ping", "/v0.1/version", "/version", "/info",
    "/containers/json?all=1", "/containers/json?filters=%7B%22id%22%3A%5B%22(%22%5D%7D",
    "/containers/json?limit=x", "/images/json", "/networks", "/volumes",
    "/v1.41/containers/create", "/containers/create?name=%00", "/v1.41/containers/nosuch/exec",
    "/v1.41/containers/nosuch/update", "/v1.41/containers/nosuch/json",
    "/v1.41/volumes/create", "/v1.41/networks/create", "/events?until=0", "*",
    "/%zz", "/containers/../../_ping", "//_ping", "/_ping?" + "a=1&" * 50,
]
BAD_FIELD = b'{"Driver":5,"Image":7,'  # a wrong type on every create route, then anything
JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=10,
)
JSON_TAIL = JSON_ANY.map(lambda v: json.dumps(v)[1:].encode() if isinstance(v, dict)
                         else json.dumps({"x": v})[1:].encode())
BODIES = (
    st.binary(max_size=300).map(lambda b: BAD_FIELD + b)
    | JSON_TAIL.map(lambda b: BAD_FIELD + b)
    | st.sampled_from([
        b"", b"{", b"[", b"null", b"\xff\xfe{\x00}\x00", b'{"Image":"busybox","a":NaN}',
        b'{"HostConfig":{"Memory":1e999}}', b"[" * 20000, b'{"a":"\\ud800"}',
    ])
)
TOKENS = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"get",
                          b"P\x00ST", b"", b"G ET", b"CONNECT"])
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1",
                            b"http/1.1", b"", b"HTTP/1.1 extra", b"HTTP/\xff"])
HEADER_NAMES = st.sampled_from([b"Host", b"Content-Type", b"Content-Length",
                                b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect",
                                b"X-Registry-Auth", b"Bad Name", b"", b"\xff", b"A" * 300])
HEADER_VALUES = st.sampled_from([b"application/json", b"text/plain", b"chunked", b"-1", b"0",
                                 b"99999999999999999999", b"close", b"keep-alive", b"tcp",
                                 b"100-continue", b"\x00", b"a\rb", b"x" * 70000, b""]) \
    | st.binary(max_size=20)
LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request's bytes: a mostly plausible request with parts broken on purpose."""
    method = draw(st.sampled_from([b"POST", b"GET"]) | TOKENS)
    target = draw(st.sampled_from(SAFE_TARGETS).map(str.encode)
                  | st.binary(max_size=40).map(lambda b: b"/" + b))
    version = draw(st.just(b"HTTP/1.1") | VERSIONS)
    eol = draw(LINE_ENDS) if draw(st.integers(0, 4)) == 0 else b"\r\n"
    body = draw(BODIES)
    headers = [(b"Host", b"127.0.0.1")]
    if draw(st.booleans()):
        headers.append((b"Content-Type", b"application/json"))
    framing = draw(st.sampled_from(["length", "wrong-length", "chunked", "bad-chunked", "none"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong-length":
        delta = draw(st.integers(-5, 5))
        headers.append((b"Content-Length", str(max(0, len(body) + delta)).encode()))
    elif framing in ("chunked", "bad-chunked"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        size = f"{len(body):x}".encode() if framing == "chunked" else draw(
            st.sampled_from([b"zz", b"-1", b"fffffffffffffffff", b"", b"1;" + b"x" * 100]))
        body = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(HEADER_NAMES), draw(HEADER_VALUES)))
    head = method + b" " + target + (b" " + version if version else b"") + eol
    head += b"".join(name + b": " + value + eol for name, value in headers) + eol
    data = head + body
    # Sometimes a few raw bytes are damaged anywhere in the request.
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        data = data[:at] + draw(st.binary(min_size=0, max_size=3)) + data[at + 1:]
    return data


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:\tZ") for line in f)
    except FileNotFoundError:
        return False


def test_malformed_requests(cluster: Cluster) -> None:
    manager, sandbox = cluster.manager, cluster.sandbox
    assert manager.proc is not None
    pid = manager.proc.pid
    engine_port = sandbox.nodes[0].host_port
    before = engine_state(sandbox)
    statuses: list[int | None] = []

    @settings(max_examples=RUNS, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(requests())
    def check(data: bytes) -> None:
        status = exchange(manager.port, data)
        statuses.append(status)
        if status is not None and status >= 500:
            engine_status = exchange(engine_port, data)
            assert engine_status is not None and engine_status >= 500, (
                f"shoal answered {status}, the engine {engine_status}, to {data[:400]!r}"
            )
        assert alive(pid), manager.log()
        assert exchange(manager.port, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n") == 200

    check()
    assert sum(1 for s in statuses if s is not None) >= len(statuses) // 2, statuses
    assert engine_state(sandbox) == before
    assert "Traceback" not in manager.log(), manager.log()
