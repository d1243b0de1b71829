"""A materialized fraud repo with a model registered in two versions, and `tureen serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.e2e.server_process import ServerProcess, wait_ready

from tureen.examples.fraud import create_repo
from tureen.store import FeatureStore

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]
SERVICE = "fraud_detection_v1"

# A model whose every prediction is its version number: responses show which version served.
MODEL_PY = '''
import numpy as np
from tureen.serving import Model


class VersionModel(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        x = self.decode(payload)
        return np.full(len(x), VERSION, dtype=np.float64)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tureen(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"tureen {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


Server = ServerProcess


def serve(repo: Path, log: Path, extra: Sequence[str] = ()) -> Server:
    port = free_port()
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [*CLI, "serve", "--repo", str(repo), "--http-port", str(port), "--grpc-port",
             str(free_port()), *extra],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return wait_ready(Server(proc, port, log=log), "tureen serve")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("deployments")
    repo = create_repo(root / "repo", accounts=50)
    with FeatureStore(repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=40), now + timedelta(minutes=1))
    for v in (1, 2):
        src = root / f"model-v{v}"
        src.mkdir()
        (src / "model.py").write_text(MODEL_PY.replace("VERSION", f"{v}.0"))
        tureen("models", "register", "vmodel", str(src), "--framework", "custom",
               "--feature-service", SERVICE, "--metrics", f'{{"auc": 0.{v}}}',
               "--repo", str(repo))
    yield repo


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """DeploymentModel freezes the collector's generations; later tests must not inherit it."""
    import gc

    yield
    gc.unfreeze()
