"""etcd backend without a store: TLS options, certificate loading, the TLS client's wiring
into aetcd, and the one-line error messages (the real store is in
tests/integration/test_etcd_tls.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aetcd.exceptions
import grpc
import pytest

from shoal.discovery.base import DiscoveryError
from shoal.discovery.etcd import EtcdBackend, describe
from shoal.discovery.etcd_tls import EtcdCredentials, TLSClient, load_credentials
from shoal.discovery.kv import KVTLS, KVDiscovery
from shoal.discovery.url import parse_discovery
from tests.certs import CertPaths, make_ca_and_certs


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_certs(tmp_path_factory.mktemp("pki"))


def tls_opts(pki: CertPaths) -> dict[str, str]:
    return {
        "kv.cacertfile": pki.ca,
        "kv.certfile": pki.client_cert,
        "kv.keyfile": pki.client_key,
    }


def tls_from(pki: CertPaths) -> KVTLS:
    return KVTLS(pki.ca, pki.client_cert, pki.client_key)


def backend_of(url: str, opts: dict[str, str]) -> EtcdBackend:
    disc = parse_discovery(url, 1.0, 3.0, opts)
    assert isinstance(disc, KVDiscovery)
    assert isinstance(disc.backend, EtcdBackend)
    return disc.backend


# -- options ----------------------------------------------------------------------------


def test_all_three_files_give_a_tls_backend(pki: CertPaths) -> None:
    backend = backend_of("etcd://127.0.0.1:2379/p", tls_opts(pki))
    assert backend.credentials == EtcdCredentials(
        Path(pki.ca).read_bytes(),
        Path(pki.client_cert).read_bytes(),
        Path(pki.client_key).read_bytes(),
    )
    assert isinstance(backend.client(), TLSClient)


@pytest.mark.parametrize("missing", ["kv.cacertfile", "kv.certfile", "kv.keyfile"])
def test_fewer_than_three_files_stay_plaintext(pki: CertPaths, missing: str) -> None:
    opts = tls_opts(pki)
    del opts[missing]
    backend = backend_of("etcd://127.0.0.1:2379/p", opts)
    assert backend.credentials is None
    assert not isinstance(backend.client(), TLSClient)


def test_missing_file_is_named(pki: CertPaths, tmp_path: Path) -> None:
    opts = tls_opts(pki) | {"kv.keyfile": str(tmp_path / "nope.pem")}
    with pytest.raises(DiscoveryError) as err:
        parse_discovery("etcd://127.0.0.1/p", 1.0, 3.0, opts)
    assert str(err.value) == (
        f"etcd: kv.keyfile: No such file or directory: {tmp_path / 'nope.pem'}"
    )


def test_key_of_another_certificate_is_refused(pki: CertPaths) -> None:
    with pytest.raises(DiscoveryError, match="not a matching certificate and key"):
        load_credentials(KVTLS(pki.ca, pki.client_cert, pki.key))


def test_ca_file_without_a_certificate_is_refused(pki: CertPaths) -> None:
    with pytest.raises(DiscoveryError, match=r"kv\.cacertfile .*: no CA certificate"):
        load_credentials(KVTLS(pki.client_key, pki.client_cert, pki.client_key))


# -- the TLS client inside aetcd ------------------------------------------------------------


async def test_tls_client_connects_over_a_secure_channel(
    pki: CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store needed: gRPC channels dial lazily. Checks the aetcd internals it relies on."""
    made: list[tuple[str, Any]] = []
    real = grpc.aio.secure_channel

    def spy(target: str, credentials: Any, options: Any = None) -> Any:
        made.append((target, credentials))
        return real(target, credentials, options=options)

    monkeypatch.setattr(grpc.aio, "secure_channel", spy)
    client = TLSClient("127.0.0.1", 2379, load_credentials(tls_from(pki)), timeout=1.0)
    await client.connect()
    await client.connect()  # once only
    assert [target for target, _ in made] == ["127.0.0.1:2379"]
    assert isinstance(made[0][1], grpc.ChannelCredentials)
    assert client.kvstub is not None and client.leasestub is not None
    assert client._watcher is not None
    await client.close()
    assert client.channel is None
    await client.connect()  # a closed client reconnects (after an address rotation too)
    assert len(made) == 2
    await client.close()


# -- messages ---------------------------------------------------------------------------------

_PREFIX = "failed to connect to all addresses; last error: "


@pytest.mark.parametrize(
    ("detail", "tls", "message"),
    [
        (
            "UNAVAILABLE: ipv4:127.0.0.1:2379: Socket closed",
            False,
            "etcd: cannot connect to 127.0.0.1:2379: does the store require TLS? Give "
            "--discovery-opt kv.cacertfile, kv.certfile and kv.keyfile (Socket closed)",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:2379: Unwrap failed (TSI_DATA_CORRUPTED)",
            True,
            "etcd: cannot connect to 127.0.0.1:2379: the store refused the client "
            "certificate (kv.certfile) (Unwrap failed (TSI_DATA_CORRUPTED))",
        ),
        (
            "UNKNOWN: ipv4:127.0.0.1:2379: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: error:1a000064:ECDSA routines:OPENSSL_internal:BAD_SIGNATURE: "
            "certificate signature failure: OK",
            True,
            "etcd: cannot connect to 127.0.0.1:2379: the store's certificate is not signed "
            "by kv.cacertfile (Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
            "error:1a000064:ECDSA routines:OPENSSL_internal:BAD_SIGNATURE: certificate "
            "signature failure: OK)",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:2379: Custom verification check failed with error: "
            "UNAUTHENTICATED: Hostname Verification Check failed.",
            True,
            "etcd: cannot connect to 127.0.0.1:2379: the store's certificate does not name "
            "this address (Custom verification check failed with error: UNAUTHENTICATED: "
            "Hostname Verification Check failed.)",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:2379: Handshake read failed (recvmsg:Connection "
            "reset by peer (104))",
            True,
            "etcd: cannot connect to 127.0.0.1:2379: the store broke off the TLS handshake; "
            "does it speak TLS? (Handshake read failed (recvmsg:Connection reset by peer "
            "(104)))",
        ),
        (
            "UNKNOWN: ipv4:127.0.0.1:2379: Failed to connect to remote host: "
            "Connection refused",
            True,
            "etcd: cannot connect to 127.0.0.1:2379: Failed to connect to remote host: "
            "Connection refused",
        ),
    ],
)
def test_connection_failures_say_what_they_mean(detail: str, tls: bool, message: str) -> None:
    exc = aetcd.exceptions.ConnectionFailedError(_PREFIX + detail)
    assert describe(exc, "127.0.0.1:2379", tls) == message


def test_other_failures_keep_their_text() -> None:
    late = describe(TimeoutError(), "h:1", True)
    assert late == "etcd: no answer from h:1 in time (TimeoutError)"
    exc = aetcd.exceptions.InvalidArgumentError("etcdserver: key is not\nprovided")
    assert describe(exc, "h:1", False) == "etcd: etcdserver: key is not provided"


def test_backend_names_the_address_it_dials() -> None:
    backend = backend_of("etcd://[::1]:2379,10.0.0.1/p", {})
    assert backend.addr == "[::1]:2379"

