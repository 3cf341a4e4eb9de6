"""Self-signed TLS material for loopback servers, laid out as zot's and skopeo's certDir.

`make_tls_material(dir)` writes a CA, a server certificate for 127.0.0.1 / localhost / ::1
signed by it, and a client certificate, then a `certs/` directory in the layout both zot's
sync `certDir` and containers-image's `--cert-dir` read (the Docker `certs.d` layout):
`ca.crt` (trusted roots), `client.cert` + `client.key` (a client certificate pair).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PrivateKey",
    "TlsMaterial",
    "issue_certificate",
    "key_pem",
    "make_tls_material",
    "new_key",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# Long enough for any test run, short enough that nobody mistakes these for real certs.
VALIDITY = datetime.timedelta(days=2)
RSA_BITS = 2048


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of PEM files. `cert_dir` holds ca.crt, client.cert, client.key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    cert_dir: Path

    @property
    def server(self) -> tuple[Path, Path]:
        """(certfile, keyfile) as RegistryServer(tls=...) takes them."""
        return self.server_cert, self.server_key


def new_key(kind: str = "ec") -> PrivateKey:
    """A fresh private key: "ec" (P-256) or "rsa" (2048 bits)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue_certificate(
    common_name: str,
    key: PrivateKey,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    """A certificate for `key`, self-signed when `issuer` is None."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server_names:
        builder = builder.add_extension(_san(server_names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_tls_material(directory: Path) -> TlsMaterial:
    """Write CA, server and client certificates under `directory` (see module docstring)."""
    ca_key = new_key()
    ca = issue_certificate("syncworker test CA", ca_key, ca=True)
    server_key, client_key = new_key(), new_key()
    server = issue_certificate(
        "127.0.0.1",
        server_key,
        issuer=(ca, ca_key),
        server_names=("127.0.0.1", "localhost", "::1"),
    )
    client = issue_certificate("syncworker-client", client_key, issuer=(ca, ca_key), client=True)
    cert_dir = directory / "certs"
    return TlsMaterial(
        ca_cert=_write(directory / "ca.pem", _cert_pem(ca)),
        server_cert=_write(directory / "server.pem", _cert_pem(server)),
        server_key=_write(directory / "server-key.pem", key_pem(server_key)),
        client_cert=_write(cert_dir / "client.cert", _cert_pem(client)),
        client_key=_write(cert_dir / "client.key", key_pem(client_key)),
        cert_dir=_write(cert_dir / "ca.crt", _cert_pem(ca)).parent,
    )
