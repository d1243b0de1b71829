"""Both HTTP/2 gRPC servers (tureen's own and grpc.aio) and the shipped HTTP/1.1 server,
each a real ``tureen serve-model`` process on 127.0.0.1 with small limits so attacks hit
them quickly: 16 MiB messages, 2 s to send a head/preface, 4 s for a body, 64 MiB of
request bytes buffered per server, 64 connections."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.server_process import ServerProcess

ECHO = '''
from tureen.serving import InferOutput, InferResponse, Model


class Echo(Model):
    def load(self):
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        if isinstance(payload, dict):
            return {"predictions": payload.get("instances", []),
                    "headers": sorted((headers or {}).items())}
        return InferResponse(self.name, [
            InferOutput("out", i.datatype, i.shape, i.data) for i in payload.inputs])
'''

#: answers with the headers it was given (JSON in one BYTES element); an input named "boom"
#: makes it fail as a model with a bug does (an internal error, logged with the request id)
SEER = '''
import json

import numpy as np

from tureen.serving import InferOutput, InferResponse, Model


class Seer(Model):
    def load(self):
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        if any(i.name == "boom" for i in payload.inputs):
            raise RuntimeError("a bug in the model")
        return InferResponse(self.name, [InferOutput(
            "headers", "BYTES", [1],
            np.array([json.dumps(sorted((headers or {}).items()))], dtype=object))])
'''

LIMITS = {
    "MAX_MESSAGE_BYTES": "16MiB",
    "MAX_REQUEST_BYTES": "16MiB",
    "HEAD_TIMEOUT_SECONDS": "2",
    "BODY_TIMEOUT_SECONDS": "4",
    "IDLE_TIMEOUT_SECONDS": "30",
    # idle keep-alive connections are not closed while a test holds them (the cap test
    # holds 64 on a loaded machine; the 5 s default could close some before its probe)
    "KEEP_ALIVE_SECONDS": "30",
    "MAX_BUFFERED_BYTES": "64MiB",
    "MAX_CONNECTIONS": "64",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(repo: Path, log: Path, *flags: str, ports: tuple[int, int] | None = None,
          limits: dict[str, str] | None = None, max_fds: int | None = None) -> ServerProcess:
    """``serve-model`` with the LIMITS (``limits`` override some), optionally with at most
    ``max_fds`` file descriptors."""
    http_port, grpc_port = ports or (free_port(), free_port())
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           **{f"TUREEN_SERVING__LIMITS__{k}": v for k, v in {**LIMITS, **(limits or {})}.items()}}

    def fds() -> None:
        if max_fds is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve-model",
             "--model_repository", str(repo), "--host", "127.0.0.1", "--http_port",
             str(http_port), "--grpc_port", str(grpc_port), "--grace_seconds", "2", *flags],
            env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=fds)
    server = ServerProcess(proc, http_port, grpc_port, log=log, repo=repo)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise TimeoutError(log.read_text()[-2000:])


def open_connections(port: int) -> int:
    """Connections the server on 127.0.0.1:``port`` still holds open (its side ESTABLISHED or
    CLOSE_WAIT: the server has not closed its socket yet), from the kernel's table."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == port and state in ("01", "08"):
            count += 1
    return count


def wait_for_no_connections(port: int, timeout: float = 30.0) -> None:
    """Wait until the server on ``port`` has closed every connection (earlier tests' clients
    are gone), so a test that counts connections starts from a known state."""
    deadline = time.monotonic() + timeout
    while (held := open_connections(port)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not held, f"the server on :{port} still holds {held} connections after {timeout} s"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance-models")
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "1" / "model.py").write_text(ECHO)
    (root / "seer" / "1").mkdir(parents=True)
    (root / "seer" / "1" / "model.py").write_text(SEER)
    return root


SERVERS = {"own": (), "fallback": ("--grpc_server", "grpcio", "--http_server", "uvicorn")}


@pytest.fixture(scope="session", params=list(SERVERS))
def h2(request: pytest.FixtureRequest, model_repo: Path,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / f"{request.param}.log"
    server = start(model_repo, log, *SERVERS[request.param])
    server.kind = request.param  # type: ignore[attr-defined]
    yield server
    assert server.stop() == 0, log.read_text()[-3000:]


@pytest.fixture(scope="session")
def own(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "own-resources.log"
    server = start(model_repo, log)
    yield server
    assert server.stop() == 0, log.read_text()[-3000:]
