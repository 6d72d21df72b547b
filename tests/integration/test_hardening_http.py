"""Issue 12, the HTTP edge: slow and idle clients, the connection cap, and answers like the
engine's (API version range, bare-LF heads, plain HTTP on TLS, oversized and deep JSON).

One sandbox engine behind a manager started with small limits; where the engine itself can
be asked the same thing (over its unix socket), the manager must answer as it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.certs import CertPaths, make_ca_and_certs
from tests.integration.conftest import DockerCli, sandbox_tag
from tests.integration.manager import Manager, free_port, running_manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEAD_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 12
WAIT = 15.0
"""Bound on any single wait in these tests (several times the limits under test)."""
HINT = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox1(request: pytest.FixtureRequest, host_ready: None) -> AsyncIterator[Sandbox]:
    async with Sandbox(1, tag=sandbox_tag(request.module.__name__)) as sandbox:
        yield sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mgr(sandbox1: Sandbox) -> AsyncIterator[Manager]:
    async with running_manager(
        sandbox1.discovery,
        "--api-head-timeout", f"{HEAD_TIMEOUT}s",
        "--api-idle-timeout", f"{IDLE_TIMEOUT}s",
        "--api-max-connections", str(MAX_CONNECTIONS),
        nodes=1,
    ) as manager:
        yield manager


# --- a raw HTTP client: these tests are about exactly what goes over the wire -----------------


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length or chunked response: status, lower-cased headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT), 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), WAIT)
            if not size:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


@contextlib.asynccontextmanager
async def connect(mgr: Manager) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", mgr.port)
    try:
        yield reader, writer
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def connect_engine(
    sandbox: Sandbox,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_unix_connection(sandbox.nodes[0].unix_socket)
    try:
        yield reader, writer
    finally:
        writer.close()


async def ask(
    conn: contextlib.AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    raw: bytes,
) -> tuple[int, dict[str, str], bytes]:
    async with conn as (reader, writer):
        writer.write(raw)
        return await read_answer(reader)


async def closed_by_server(reader: asyncio.StreamReader, within: float = WAIT) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), within)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return data == b""


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: shoal\r\n\r\n".encode()


async def engine_containers(sandbox: Sandbox) -> list[str]:
    _, _, body = await ask(connect_engine(sandbox), get("/containers/json?all=1"))
    return [c["Id"] for c in json.loads(body)]


# --- answers like the engine's -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1.99/_ping", "/v99/version", "/v0.1/containers/json", "/v1.0/info"]
)
async def test_api_version_out_of_range_answers_like_the_engine(
    mgr: Manager, sandbox1: Sandbox, path: str
) -> None:
    mine = await ask(connect(mgr), get(path))
    engine = await ask(connect_engine(sandbox1), get(path))
    assert mine[0] == engine[0] == 400
    assert mine[1]["content-type"] == engine[1]["content-type"]  # plain text below 1.24
    assert mine[1]["api-version"] == engine[1]["api-version"]
    assert mine[2] == engine[2]
    assert b"API version" in mine[2]
    ok = await ask(connect(mgr), get("/v1.41/_ping"))
    assert (ok[0], ok[2]) == (200, b"OK")


async def test_cli_sees_the_version_error(
    mgr: Manager, docker_cli: DockerCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI pinned to a too-new version prints the engine's message."""
    monkeypatch.setenv("DOCKER_API_VERSION", "1.99")
    out = await docker_cli(mgr.tcp, "ps")
    assert out.returncode != 0
    assert "client version 1.99 is too new. Maximum supported API version is 1.41" in out.stderr


async def test_bare_lf_request_is_answered_like_the_engine(
    mgr: Manager, sandbox1: Sandbox
) -> None:
    raw = b"GET /v1.41/_ping HTTP/1.1\nHost: shoal\n\n"
    mine = await ask(connect(mgr), raw)
    engine = await ask(connect_engine(sandbox1), raw)
    assert mine[0] == engine[0]
    assert mine[0] in (200, 400)  # answered either way, never left waiting
    if mine[0] == 200:
        assert mine[2] == engine[2] == b"OK"
    garbage = await ask(connect(mgr), b"HELLO\n\n")
    assert garbage[0] == 400


async def test_json_body_too_large_or_too_deep_creates_nothing(
    mgr: Manager, sandbox1: Sandbox
) -> None:
    before = await engine_containers(sandbox1)
    big = json.dumps({"Image": "busybox", "Cmd": ["x" * (20 * 2**20)]}).encode()
    async with connect(mgr) as (reader, writer):
        writer.write(
            b"POST /v1.41/containers/create HTTP/1.1\r\nHost: shoal\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(big)
        )
        with contextlib.suppress(ConnectionError):
            writer.write(big)
        status, _, body = await read_answer(reader)
    assert status == 413, body
    assert "message" in json.loads(body)
    deep = b'{"Image": "busybox", "Cmd": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, _, body = await ask(
        connect(mgr),
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: shoal\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep,
    )
    assert status == 400, body
    assert "depth" in json.loads(body)["message"]
    # Not JSON at all: 400, not a Python error.
    status, _, body = await ask(
        connect(mgr),
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: shoal\r\n"
        b"Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"Image\":",
    )
    assert status == 400, body
    assert await engine_containers(sandbox1) == before
    ping = await ask(connect(mgr), get("/_ping"))
    assert ping[0] == 200


# --- slow and idle clients ----------------------------------------------------------------------


async def test_half_a_head_is_closed_while_others_are_served(mgr: Manager) -> None:
    async with connect(mgr) as (slow_reader, slow_writer):
        slow_writer.write(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: shoal\r\nUser-Ag")
        async with connect(mgr) as (reader, writer):
            for _ in range(4):  # served on and on, across the head timeout
                writer.write(get("/_ping"))
                status, _, body = await read_answer(reader)
                assert (status, body) == (200, b"OK")
                await asyncio.sleep(HEAD_TIMEOUT / 3)
        assert await closed_by_server(slow_reader)


async def test_idle_keep_alive_is_closed(mgr: Manager) -> None:
    async with connect(mgr) as (reader, writer):
        writer.write(get("/_ping"))
        assert (await read_answer(reader))[0] == 200
        await asyncio.sleep(IDLE_TIMEOUT / 2)
        writer.write(get("/_ping"))  # still open within the limit
        assert (await read_answer(reader))[0] == 200
        assert await closed_by_server(reader)


async def test_streams_are_not_cut_by_the_idle_timeout(
    mgr: Manager, docker_cli: DockerCli
) -> None:
    script = "echo one; sleep 5; echo two"  # a silence longer than the idle timeout
    run = await docker_cli(mgr.tcp, "run", "--rm", "busybox", "sh", "-c", script, timeout=60)
    assert (run.returncode, run.stdout) == (0, "one\ntwo\n"), run.stderr
    started = await docker_cli(mgr.tcp, "run", "-d", "busybox", "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    try:
        logs = await docker_cli(mgr.tcp, "logs", "-f", cid, timeout=60)
        assert (logs.returncode, logs.stdout) == (0, "one\ntwo\n"), logs.stderr
    finally:
        await docker_cli(mgr.tcp, "rm", "-f", cid)


async def test_connection_cap(mgr: Manager) -> None:
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(MAX_CONNECTIONS):  # /events streams: open, and exempt from idle limits
            reader, writer = await asyncio.open_connection("127.0.0.1", mgr.port)
            held.append((reader, writer))
            writer.write(get("/v1.41/events"))
            status, _ = await read_stream_head(reader)
            assert status == 200
        async with connect(mgr) as (reader, writer):
            with contextlib.suppress(ConnectionError):
                writer.write(get("/_ping"))
            assert await closed_by_server(reader)
        assert "Connection limit reached" in mgr.log()
        for reader, _ in held:  # existing ones unharmed
            assert not await closed_by_server(reader, within=0.2)
    finally:
        for _, writer in held:
            writer.close()

    async def served() -> bool:
        try:
            status, _, _ = await ask(connect(mgr), get("/_ping"))
        except (ConnectionError, asyncio.IncompleteReadError):
            return False
        return status == 200

    await wait_until(served, WAIT, "a connection below the cap to be served")


async def read_stream_head(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return int(head.split(b" ", 2)[1]), head


# --- plain HTTP on a TLS listener ---------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(Path(tmp_path_factory.mktemp("certs")))


async def test_plain_http_to_tls_gets_the_engines_hint(
    sandbox1: Sandbox, certs: CertPaths, docker_cli: DockerCli
) -> None:
    port = free_port()
    client = ssl.create_default_context(cafile=certs.ca)
    client.load_cert_chain(certs.client_cert, certs.client_key)
    tls = Manager(
        ["manage", "--tlsverify", "--tlscacert", certs.ca, "--tlscert", certs.cert,
         "--tlskey", certs.key, "-H", f"tcp://127.0.0.1:{port}", sandbox1.discovery],
        port,
        ssl_context=client,
    )
    await tls.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(get("/_ping"))
            assert await asyncio.wait_for(reader.read(), WAIT) == HINT
        finally:
            writer.close()
        out = await docker_cli(f"tcp://127.0.0.1:{port}", "version")
        assert out.returncode != 0
        assert "Client sent an HTTP request to an HTTPS server" in out.stderr
    finally:
        await tls.stop()
