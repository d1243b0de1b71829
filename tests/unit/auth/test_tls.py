"""TLS contexts with real certificates (made with `cryptography`), reload without dropping
connections, client certificates. Handshakes run over a socketpair (no network)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from tureen.auth.devcert import make_dev_certs
from tureen.auth.mtls import subject_of
from tureen.auth.settings import TLSSettings
from tureen.auth.tls import CertReloader, client_context, server_context
from tureen.errors import ConfigError


class Conn:
    """A TLS connection over a socketpair; the server side echoes in a thread."""

    def __init__(self, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
        a, b = socket.socketpair()
        self.peer: dict[str, Any] | None = None
        self.server_error: BaseException | None = None
        self._t = threading.Thread(target=self._serve, args=(server_ctx, a), daemon=True)
        self._t.start()
        self.sock = client_ctx.wrap_socket(b, server_hostname="localhost")

    def _serve(self, ctx: ssl.SSLContext, raw: socket.socket) -> None:
        try:
            with ctx.wrap_socket(raw, server_side=True) as s:
                self.peer = s.getpeercert()
                while data := s.recv(100):
                    s.sendall(data)
        except (ssl.SSLError, OSError) as exc:
            self.server_error = exc

    def echo(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.sock.recv(100)

    def serial(self) -> int:
        from cryptography import x509

        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)

    def close(self) -> None:
        self.sock.close()
        self._t.join(5)


def test_handshake_verifies_against_the_dev_ca(tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path)
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"
    srv = server_context(TLSSettings(cert=str(files.cert), key=str(files.key)), alpn=["h2"])
    c = Conn(srv, client_context(str(files.ca)))
    assert c.echo(b"ping") == b"ping"
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.close()
    # a client that does not trust the CA refuses the server
    with pytest.raises(ssl.SSLCertVerificationError):
        Conn(srv, client_context(None))


def test_reload_serves_the_new_pair_and_keeps_open_connections(tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path)
    settings = TLSSettings(cert=str(files.cert), key=str(files.key))
    reloader = CertReloader(settings)
    srv = reloader.add(server_context(settings))
    client = client_context(str(files.ca))
    old = Conn(srv, client)
    first = old.serial()
    make_dev_certs(tmp_path)  # renewed pair, same CA
    st = os.stat(files.cert)
    os.utime(files.cert, (st.st_atime, st.st_mtime + 5))
    assert reloader.check() and reloader.reloads == 1
    new = Conn(srv, client)
    assert new.serial() != first
    assert old.echo(b"still here") == b"still here"  # not dropped
    old.close()
    new.close()
    assert not reloader.check()  # unchanged files: nothing to do


def test_a_broken_renewal_keeps_the_old_pair(tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path)
    settings = TLSSettings(cert=str(files.cert), key=str(files.key))
    reloader = CertReloader(settings)
    srv = reloader.add(server_context(settings))
    c = Conn(srv, client_context(str(files.ca)))
    serial = c.serial()
    c.close()
    files.key.write_text("-----BEGIN PRIVATE KEY-----\nhalf")
    assert not reloader.reload()
    c = Conn(srv, client_context(str(files.ca)))
    assert c.serial() == serial
    c.close()


def test_client_certificates_are_required_and_named(tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path, clients=["transformer-1"])
    settings = TLSSettings(cert=str(files.cert), key=str(files.key), client_ca=str(files.ca))
    srv = server_context(settings)
    with_cert = client_context(str(files.ca), str(tmp_path / "transformer-1.pem"),
                               str(tmp_path / "transformer-1-key.pem"))
    c = Conn(srv, with_cert)
    assert c.echo(b"x") == b"x"
    assert subject_of(c.peer) == "CN=transformer-1,O=tureen dev"
    c.close()
    bare = Conn(srv, client_context(str(files.ca)))
    with pytest.raises((ssl.SSLError, OSError)):
        bare.echo(b"x")  # TLS 1.3: the refusal arrives with the first read
    bare.close()
    assert bare.server_error is not None
    # optional client certificates (tokens also accepted): a bare client gets in
    opt = server_context(settings, require_client_cert=False)
    c = Conn(opt, client_context(str(files.ca)))
    assert c.echo(b"y") == b"y" and not c.peer
    c.close()


def test_missing_or_mismatched_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist.*dev-cert"):
        server_context(TLSSettings(cert=str(tmp_path / "no.pem"), key=str(tmp_path / "k")))
    a = make_dev_certs(tmp_path / "a")
    b = make_dev_certs(tmp_path / "b")
    with pytest.raises(ConfigError, match="key matches the certificate"):
        server_context(TLSSettings(cert=str(a.cert), key=str(b.key)))
