"""mTLS: a verified client certificate's subject → an identity, by the first matching rule.

The TLS layer has already verified the certificate against ``serving.tls.client_ca``; this
module only names the caller. Subjects are written in RFC 4514 order as ``CN=...,O=...``
(most specific first, as ``openssl x509 -subject -nameopt rfc2253`` prints them) and matched
with shell-style patterns: ``CN=transformer-*,O=acme``. A rule ``CN=name`` (no comma) matches
the common name alone.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from tureen.auth.policy import Identity
from tureen.auth.settings import MTLSRule

_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
          "emailAddress": "emailAddress", "domainComponent": "DC", "serialNumber": "serialNumber"}


_OIDS = {"2.5.4.3": "commonName", "2.5.4.10": "organizationName",
         "2.5.4.11": "organizationalUnitName", "2.5.4.6": "countryName",
         "2.5.4.8": "stateOrProvinceName", "2.5.4.7": "localityName",
         "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "domainComponent",
         "2.5.4.5": "serialNumber"}


def peercert_from_pem(pem: bytes) -> dict[str, Any] | None:
    """A verified client certificate (PEM, as grpcio's auth context gives it) in
    ``ssl.SSLSocket.getpeercert()`` form, so both gRPC servers name callers alike."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - the auth extra
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    subject = tuple(
        tuple((_OIDS.get(a.oid.dotted_string, a.oid.dotted_string), str(a.value)) for a in rdn)
        for rdn in cert.subject.rdns)
    return {"subject": subject}


def _escape(v: str) -> str:
    out = v.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
    return out.replace("\0", "")


def subject_of(peercert: dict[str, Any] | None) -> str | None:
    """``ssl.SSLSocket.getpeercert()``'s subject as ``CN=...,O=...`` (RFC 4514 order)."""
    if not peercert:
        return None
    rdns = peercert.get("subject") or ()
    parts: list[str] = []
    for rdn in reversed(rdns):
        parts.append("+".join(f"{_SHORT.get(k, k)}={_escape(str(v))}" for k, v in rdn))
    return ",".join(parts) or None


def _components(dn: str) -> list[str]:
    """Split a DN on commas that are not escaped."""
    return re.split(r"(?<!\\),", dn)


def common_name(subject: str) -> str | None:
    for part in _components(subject):
        k, _, v = part.partition("=")
        if k == "CN":
            return v
    return None


def _match(subject: str, pattern: str) -> bool:
    """Component by component: a ``*`` never spans a comma into the next attribute."""
    got, want = _components(subject), _components(pattern)
    return len(got) == len(want) and all(
        fnmatch.fnmatchcase(g, w) for g, w in zip(got, want, strict=True))


class SubjectMapper:
    def __init__(self, rules: Sequence[MTLSRule]) -> None:
        self.rules = list(rules)

    def identity(self, subject: str) -> Identity:
        cn = common_name(subject)
        for rule in self.rules:
            target = subject if "," in rule.match or cn is None else f"CN={cn}"
            if _match(target, rule.match):
                return Identity(subject=subject[:300], source="mtls", roles=tuple(rule.roles),
                                projects=tuple(rule.projects), names=tuple(rule.names))
        return Identity(subject=subject[:300], source="mtls", roles=())
