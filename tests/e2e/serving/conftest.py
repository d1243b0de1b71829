"""Real model servers (``tureen serve-model`` subprocesses) on free 127.0.0.1 ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.e2e.server_process import ServerProcess

N_FEATURES = 10

CUSTOM = '''
import asyncio
import numpy as np
from tureen.serving import Model


class Scaler(Model):
    def load(self):
        self.factor = 3.0
        self.ready = True
        return True

    async def preprocess(self, payload, headers=None):
        return np.asarray(payload["instances"], dtype=np.float64)

    def predict(self, payload, headers=None):
        return payload * self.factor

    def postprocess(self, result, headers=None):
        return {"predictions": result.tolist(), "tenant": (headers or {}).get("x-tenant")}

    def explain(self, payload, headers=None):
        return {"explanations": [["factor", self.factor]]}
'''

ECHO = '''
from tureen.serving import InferOutput, InferResponse, Model


class Echo(Model):
    def load(self):
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        return InferResponse(self.name, [
            InferOutput(i.name.replace("in", "out"), i.datatype, i.shape, i.data)
            for i in payload.inputs])
'''

SLOW = '''
import time
from tureen.serving import Model


class Slow(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        time.sleep(float(payload["instances"][0][0]))
        return [1]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=N_FEATURES) > 0).astype(np.int64)
    return LogisticRegression().fit(x, y)


def write_lr(root: Path, version: str, seed: int) -> LogisticRegression:
    m = train(seed)
    (root / "lr" / version).mkdir(parents=True)
    joblib.dump(m, root / "lr" / version / "model.joblib")
    return m


def write_custom(root: Path, name: str, code: str) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(code)


Server = ServerProcess


def start_server(repo: Path | None, *extra: str, wait: bool = True) -> Server:
    http_port, grpc_port = free_port(), free_port()
    args = [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve-model",
            "--host", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port),
            "--grace_seconds", "10", "--enable_model_control", *extra]
    if repo is not None:
        args += ["--model_repository", str(repo)]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(proc, http_port, grpc_port, repo=repo or Path("."))
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not become ready")


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_lr(root, "1", 1)
    write_lr(root, "2", 2)
    write_custom(root, "scaler", CUSTOM)
    write_custom(root, "echo", ECHO)
    write_custom(root, "slow", SLOW)
    return root


#: tureen's own HTTP/1.1 and HTTP/2 servers (the default), and the uvicorn + grpc.aio fallback:
#: every test against ``server`` runs on both
IMPLEMENTATIONS = {
    "own-servers": (),
    "uvicorn-grpcio": ("--http_server", "uvicorn", "--grpc_server", "grpcio"),
}


@pytest.fixture(scope="session", params=list(IMPLEMENTATIONS))
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    s = start_server(repo, "--version_policy", "all", "--max_request_mb", "8",
                     *IMPLEMENTATIONS[request.param])
    yield s
    assert s.stop() == 0


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


__all__ = ["Server", "shutil", "start_server", "wait_ready", "write_lr"]
