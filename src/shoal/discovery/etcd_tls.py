"""TLS (with a client certificate) for aetcd, which only dials plaintext gRPC.

aetcd 1.0 builds its channel with ``grpc.aio.insecure_channel`` inside ``connect()``;
``TLSClient`` overrides just that step with ``grpc.aio.secure_channel`` and gRPC's own
TLS credentials, so every RPC, the watcher and the error mapping stay aetcd's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aetcd
import grpc
from aetcd import rpc, watcher

from shoal.discovery.base import DiscoveryError
from shoal.discovery.kv import KVTLS

__all__ = ["EtcdCredentials", "TLSClient", "load_credentials"]


@dataclass(frozen=True)
class EtcdCredentials:
    """The PEM bytes gRPC needs (kept so a reconnect to another address re-reads nothing)."""

    ca: bytes
    cert: bytes
    key: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def load_credentials(tls: KVTLS) -> EtcdCredentials:
    """Read and check the ``kv.*file`` PEMs now: gRPC would only fail at the first call,
    with a vague handshake error; a bad path or a key that does not match the certificate
    is a startup error (DiscoveryError) instead."""
    files = {"kv.cacertfile": tls.ca, "kv.certfile": tls.cert, "kv.keyfile": tls.key}
    data: dict[str, bytes] = {}
    for option, path in files.items():
        try:
            with open(path, "rb") as f:
                data[option] = f.read()
        except OSError as exc:
            raise DiscoveryError(f"etcd: {option}: {exc.strerror or exc}: {path}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data["kv.cacertfile"].decode("latin-1"))
    except (ssl.SSLError, ValueError) as exc:
        raise DiscoveryError(f"etcd: kv.cacertfile {tls.ca}: no CA certificate ({exc})") from None
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as exc:
        raise DiscoveryError(
            f"etcd: kv.certfile {tls.cert} and kv.keyfile {tls.key} are not a matching "
            f"certificate and key ({exc})"
        ) from None
    return EtcdCredentials(data["kv.cacertfile"], data["kv.certfile"], data["kv.keyfile"])


class TLSClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over TLS; the server is checked against the given CA and name."""

    def __init__(
        self, host: str, port: int, credentials: EtcdCredentials, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._credentials = credentials

    async def connect(self) -> None:
        # aetcd's connect() minus authentication (the client certificate is the identity);
        # no await in between, so concurrent callers cannot build two channels.
        if self._connected.is_set():
            return
        target = f"[{self._host}]:{self._port}" if ":" in self._host else (
            f"{self._host}:{self._port}"
        )
        self.channel = grpc.aio.secure_channel(
            target, self._credentials.channel_credentials(), options=list(self._options.items())
        )
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()
