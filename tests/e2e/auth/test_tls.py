"""TLS with real certificates (made by `cryptography` in the test): REST and gRPC on both
HTTP/1.1 servers and both gRPC servers, with tritonclient and grpcio clients; ALPN; client
certificates as identities (mTLS); a renewed certificate served without dropping a
connection."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import joblib
import numpy as np
import pytest
from cryptography import x509
from sklearn.linear_model import LogisticRegression
from tests.e2e.feature_server.servers import Server, free_port

from tureen.auth.devcert import CertFiles, make_dev_certs
from tureen.auth.tls import client_context
from tureen.codecs.pb import inference_pb2 as pb

pytestmark = pytest.mark.slow

ROW = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tls") / "models"
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    (root / "lr" / "1").mkdir(parents=True)
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), root / "lr" / "1" / "model.joblib")
    return root


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_dev_certs(tmp_path_factory.mktemp("certs"), clients=["transformer-1", "other"])


def https_start(args: list[str], log: Path, ca: Path, timeout: float = 90.0,
                cert: tuple[str, str] | None = None) -> Server:
    """Start a TLS server and wait until it answers over https."""
    hp, gp = free_port(), free_port()
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tureen.cli.main import main; main()", *args,
             "--http_port", str(hp), "--grpc_port", str(gp)],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(proc, hp, gp, log=log)
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            ctx = client_context(str(ca), *(cert or (None, None)))
            with httpx.Client(verify=ctx, timeout=1) as c:
                if c.get(f"https://localhost:{hp}/v2/health/ready").status_code == 200:
                    return server
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.fixture(scope="module", params=[("tureen", "tureen"), ("uvicorn", "grpcio")],
                ids=["own-servers", "uvicorn-grpcio"])
def tls_server(request: pytest.FixtureRequest, models: Path, certs: CertFiles,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    http_server, grpc_server = request.param
    log = tmp_path_factory.mktemp("log") / "server.log"
    s = https_start(["serve-model", "--model_repository", str(models), "--tls-cert",
                     str(certs.cert), "--tls-key", str(certs.key), "--http_server", http_server,
                     "--grpc_server", grpc_server], log, certs.ca)
    yield s
    assert s.stop() == 0, log.read_text()


def _alpn(port: int, offer: list[str], ca: Path) -> str | None:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(offer)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        return s.selected_alpn_protocol()


# geventhttpclient (under tritonclient.http) still calls ssl.match_hostname
@pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning")
def test_rest_and_grpc_over_tls(tls_server: Server, certs: CertFiles) -> None:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    url = f"https://localhost:{tls_server.http_port}"
    r = httpx.post(url + "/v1/models/lr:predict", json={"instances": [ROW]},
                   verify=client_context(str(certs.ca)))
    assert r.status_code == 200, r.text
    # plaintext on the TLS port is refused, not served
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.http_port}/v2/health/live", timeout=3)
    # tritonclient over HTTPS and gRPC-TLS
    hc = thttp.InferenceServerClient(f"localhost:{tls_server.http_port}", ssl=True,
                                     ssl_context_factory=lambda: ssl.create_default_context(
                                         cafile=str(certs.ca)))
    assert hc.is_server_live()
    x = thttp.InferInput("input-0", [1, 4], "FP32")
    x.set_data_from_numpy(np.asarray([ROW], dtype=np.float32))
    assert hc.infer("lr", [x]).as_numpy("output-0") is not None
    hc.close()
    gc = tgrpc.InferenceServerClient(f"localhost:{tls_server.grpc_port}", ssl=True,
                                     root_certificates=str(certs.ca))
    assert gc.is_server_live()
    gx = tgrpc.InferInput("input-0", [1, 4], "FP32")
    gx.set_data_from_numpy(np.asarray([ROW], dtype=np.float32))
    assert gc.infer("lr", [gx]).as_numpy("output-0") is not None
    gc.close()
    # a grpcio client that does not trust the CA fails the handshake
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}",
                             grpc.ssl_channel_credentials()) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ServerLive",
                              request_serializer=pb.ServerLiveRequest.SerializeToString,
                              response_deserializer=pb.ServerLiveResponse.FromString)
        with pytest.raises(grpc.RpcError) as exc:
            call(pb.ServerLiveRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_alpn_h2_on_the_grpc_port_http11_on_rest(models: Path, certs: CertFiles,
                                                 tmp_path: Path) -> None:
    s = https_start(["serve-model", "--model_repository", str(models), "--tls-cert",
                     str(certs.cert), "--tls-key", str(certs.key)], tmp_path / "s.log", certs.ca)
    try:
        assert _alpn(s.grpc_port, ["h2", "http/1.1"], certs.ca) == "h2"
        assert _alpn(s.http_port, ["h2", "http/1.1"], certs.ca) == "http/1.1"
    finally:
        assert s.stop() == 0


def _serial(port: int, ca: Path) -> tuple[int, ssl.SSLSocket]:
    ctx = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    der = s.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number), s


def _get_on(sock: ssl.SSLSocket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    return data.split(b"\r\n", 1)[0]


def test_renewed_certificate_without_dropping_connections(models: Path, tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path / "certs")
    s = https_start(["serve-model", "--model_repository", str(models), "--tls-cert",
                     str(files.cert), "--tls-key", str(files.key), "--disable_grpc"],
                    tmp_path / "s.log", files.ca)
    try:
        first, old = _serial(s.http_port, files.ca)
        assert _get_on(old, "/v2/health/live").endswith(b"200 OK")
        make_dev_certs(tmp_path / "certs")  # renewed pair, same CA
        deadline = time.monotonic() + 15
        while True:
            serial, probe = _serial(s.http_port, files.ca)
            probe.close()
            if serial != first:
                break
            assert time.monotonic() < deadline, "the renewed certificate was not picked up"
            time.sleep(0.3)
        assert _get_on(old, "/v2/health/live").endswith(b"200 OK")  # not dropped
        old.close()
        assert "TLS certificate reloaded" in (tmp_path / "s.log").read_text()
    finally:
        assert s.stop() == 0


def _mtls_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "tureen.yaml").write_text(
        "project: p\nserving:\n  auth:\n    type: mtls\n    mtls:\n      subjects:\n"
        "        - {match: 'CN=transformer-*', roles: [predictor]}\n")
    return repo


def test_client_certificates_name_the_caller(models: Path, certs: CertFiles,
                                             tmp_path: Path) -> None:
    repo = _mtls_repo(tmp_path)
    folder = certs.ca.parent
    server = https_start(
        ["serve-model", "--model_repository", str(models), "--repo", str(repo), "--tls-cert",
         str(certs.cert), "--tls-key", str(certs.key), "--tls-client-ca", str(certs.ca)],
        tmp_path / "mtls.log", certs.ca,
        cert=(str(folder / "transformer-1.pem"), str(folder / "transformer-1-key.pem")))
    try:
        body = json.dumps({"instances": [ROW]})
        url = f"https://localhost:{server.http_port}/v1/models/lr:predict"

        def post(name: str | None) -> int:
            ctx = client_context(str(certs.ca), str(folder / f"{name}.pem"),
                                 str(folder / f"{name}-key.pem")) if name else \
                client_context(str(certs.ca))
            with httpx.Client(verify=ctx) as c:
                return c.post(url, content=body).status_code

        assert post("transformer-1") == 200
        assert post("other") == 403  # a valid certificate no rule maps to a role
        with pytest.raises(httpx.HTTPError):
            post(None)  # no certificate: the handshake fails
        creds = grpc.ssl_channel_credentials(
            (folder / "ca.pem").read_bytes(), (folder / "transformer-1-key.pem").read_bytes(),
            (folder / "transformer-1.pem").read_bytes())
        with grpc.secure_channel(f"localhost:{server.grpc_port}", creds) as ch:
            infer = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=pb.ModelInferRequest.SerializeToString,
                                   response_deserializer=pb.ModelInferResponse.FromString)
            req = pb.ModelInferRequest(model_name="lr")
            req.inputs.add(name="input-0", datatype="FP32", shape=[1, 4])
            req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
            assert infer(req, timeout=30).outputs
    finally:
        assert server.stop() == 0

