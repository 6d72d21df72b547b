"""Test PKI: a CA, a server/manager certificate and a client certificate, written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    """PEM file paths. `cert`/`key` serve as server and client cert (as Swarm uses them)."""

    ca: str
    ca_key: str
    cert: str
    key: str
    client_cert: str
    client_key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    hosts: tuple[str, ...],
    usages: list[x509.ObjectIdentifier],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_ca_and_certs(
    directory: str | Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
) -> CertPaths:
    """Write ca.pem, cert.pem/key.pem (server+client use, SANs = hosts), client-*.pem."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("shoal test CA"))
        .issuer_name(_name("shoal test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server_cert, server_key = _issue(ca_cert, ca_key, "shoal", hosts, both)
    client_cert, client_key = _issue(
        ca_cert, ca_key, "client", (), [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    paths = CertPaths(
        ca=str(d / "ca.pem"),
        ca_key=str(d / "ca-key.pem"),
        cert=str(d / "cert.pem"),
        key=str(d / "key.pem"),
        client_cert=str(d / "client-cert.pem"),
        client_key=str(d / "client-key.pem"),
    )
    Path(paths.ca).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, Path(paths.ca_key))
    Path(paths.cert).write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, Path(paths.key))
    Path(paths.client_cert).write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(client_key, Path(paths.client_key))
    return paths
