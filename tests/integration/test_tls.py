"""Issue 2 acceptance, TLS: with --tlsverify only clients with a CA-signed certificate get in.

The engines are reached over their unix sockets, where TLS does not apply, so the
manager's certificate settings govern the client side alone.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.certs import CertPaths, make_ca_and_certs
from tests.integration.conftest import DOCKER_NEW, DOCKER_OLD, DockerCli
from tests.integration.manager import Manager, free_port, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(Path(tmp_path_factory.mktemp("certs")))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_manager(make_sandbox_module: Sandbox, certs: CertPaths) -> AsyncIterator[Manager]:
    port = free_port()
    discovery = ",".join(f"unix://{n.unix_socket}" for n in make_sandbox_module.nodes)
    client = ssl.create_default_context(cafile=certs.ca)
    client.load_cert_chain(certs.client_cert, certs.client_key)
    mgr = Manager(
        ["manage", "--tlsverify", "--tlscacert", certs.ca, "--tlscert", certs.cert,
         "--tlskey", certs.key, "-H", f"tcp://127.0.0.1:{port}", discovery],
        port,
        ssl_context=client,
    )
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def make_sandbox_module(request: pytest.FixtureRequest, host_ready: None
                              ) -> AsyncIterator[Sandbox]:
    from tests.integration.conftest import sandbox_tag

    async with Sandbox(2, tag=sandbox_tag(request.module.__name__)) as sandbox:
        yield sandbox


def tls_args(certs: CertPaths) -> list[str]:
    return ["--tlsverify", "--tlscacert", certs.ca, "--tlscert", certs.client_cert,
            "--tlskey", certs.client_key]


@pytest.mark.parametrize("cli", [DOCKER_NEW, DOCKER_OLD])
async def test_client_certificate_required(
    tls_manager: Manager, certs: CertPaths, docker_cli: DockerCli, cli: str
) -> None:
    host = f"tcp://127.0.0.1:{tls_manager.port}"

    async def two_nodes() -> bool:
        out = await docker_cli(host, *tls_args(certs), "info", cli=cli)
        return out.returncode == 0 and out.stdout.count("Status: Healthy") == 2

    await wait_until(two_nodes, 60, "two healthy nodes over TLS")
    run = await docker_cli(host, *tls_args(certs), "run", "--rm", "busybox", "echo", "secure",
                           cli=cli)
    assert run.stdout == "secure\n", run.stderr
    # No client certificate: the handshake is refused.
    bare = await docker_cli(host, "--tls", "--tlscacert", certs.ca, "info", cli=cli)
    assert bare.returncode != 0
    # Plain HTTP against a TLS listener fails too.
    plain = await docker_cli(host, "info", cli=cli)
    assert plain.returncode != 0


async def test_raw_tls_handshake_without_cert_fails(tls_manager: Manager, certs: CertPaths
                                                   ) -> None:
    context = ssl.create_default_context(cafile=certs.ca)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", tls_manager.port,
                                                       ssl=context)
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert not data.startswith(b"HTTP/1.1 200")
        raise ConnectionError("no answer")
    context.load_cert_chain(certs.client_cert, certs.client_key)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_manager.port, ssl=context)
    writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
