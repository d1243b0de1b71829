"""``tureen dev-cert``: a local CA, a server certificate and optional client certificates.

For local use and tests only: the CA key is written beside the certificates. The server
certificate names ``localhost``, ``127.0.0.1``, ``::1`` and any extra hosts; client
certificates (for mTLS) carry ``CN=<name>`` and the client-auth usage.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tureen.errors import ConfigError


def _crypto() -> Any:
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the auth extra
        raise ConfigError("dev-cert needs the cryptography package: pip install "
                          "'tureen[auth]'.") from exc
    from cryptography import x509
    return x509


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    ca_key: Path
    cert: Path
    key: Path


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_cert(path: Path, cert: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, org: str = "tureen dev") -> Any:
    x509 = _crypto()
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _load_ca(out: Path) -> tuple[Any, Any]:
    """The CA in ``out`` (made on first use)."""
    x509 = _crypto()
    from cryptography.hazmat.primitives import hashes, serialization

    ca_path, key_path = out / "ca.pem", out / "ca-key.pem"
    if ca_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return cert, key
    key = _new_key()
    now = datetime.now(UTC)
    name = _name("tureen dev CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(ca_path, cert)
    return cert, key


def _issue(out: Path, stem: str, cn: str, hosts: list[str], client: bool, days: int) -> None:
    x509 = _crypto()
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert, ca_key = _load_ca(out)
    key = _new_key()
    now = datetime.now(UTC)
    sans: list[Any] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(out / f"{stem}-key.pem", key)
    _write_cert(out / f"{stem}.pem", cert)


def make_dev_certs(
    out: str | Path,
    hosts: list[str] | None = None,
    clients: list[str] | None = None,
    days: int = 30,
) -> CertFiles:
    """Write ca.pem, server.pem/server-key.pem (and <client>.pem/<client>-key.pem) to ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    all_hosts = ["localhost", "127.0.0.1", "::1", *(hosts or [])]
    _issue(folder, "server", all_hosts[0] if not hosts else hosts[0], all_hosts, False, days)
    for c in clients or []:
        if not c or "/" in c or c.startswith("."):
            raise ConfigError(f"client name {c!r} is not valid; use letters, digits and '-'.")
        _issue(folder, c, c, [], True, days)
    return CertFiles(folder / "ca.pem", folder / "ca-key.pem", folder / "server.pem",
                     folder / "server-key.pem")
