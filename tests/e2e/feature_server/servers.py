"""Shared helpers: a materialized fraud repo, a trained model, tureen servers as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from tests.e2e.server_process import ServerProcess, wait_ready

from tureen.examples.fraud import create_repo
from tureen.store import FeatureStore

SERVICE = "fraud_detection_v2"
FEATURES = ["credit_score", "account_age_days", "has_2fa_installed", "num_transactions_7d",
            "total_amount_7d", "has_fraud_7d", "amount_vs_avg_7d"]
CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_repo(dest: Path, materialize: bool = True, accounts: int = 200) -> Path:
    create_repo(dest, accounts=accounts, days=10)
    with FeatureStore(dest) as fs:
        fs.apply()
        if materialize:
            now = datetime.now(UTC)
            fs.materialize(now - timedelta(days=11), now + timedelta(minutes=1))
    return dest


def train_model(repo: Path, name: str = "fraud_model") -> LogisticRegression:
    """A logistic regression on the service's 7 features, saved as ``models/<name>/1``."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, len(FEATURES))) * [60, 900, 1, 5, 200, 1, 1] + [680, 1500, 0, 8,
                                                                            300, 0, 1]
    y = (x[:, 0] < 670).astype(np.int64)
    clf = LogisticRegression(max_iter=2000).fit(x, y)
    d = repo / "models" / name / "1"
    d.mkdir(parents=True)
    joblib.dump(clf, d / "model.joblib")
    (d / "model-settings.json").write_text(json.dumps({"method": "predict_proba"}))
    return clf


def write_model_py(repo: Path, name: str, code: str) -> Path:
    d = repo / "models" / name / "1"
    d.mkdir(parents=True)
    (d / "model.py").write_text(code)
    return d


Server = ServerProcess


def start(args: Sequence[str], log: Path, ready: str = "/v2/health/ready",
          http_port: int | None = None, grpc_port: int | None = None,
          port_flags: tuple[str, str] = ("--http-port", "--grpc-port"),
          timeout: float = 90.0) -> Server:
    """Run ``tureen <args>`` on free ports and wait until ``ready`` answers 200."""
    hp, gp = http_port or free_port(), grpc_port or free_port()
    cmd = [*CLI, *args, port_flags[0], str(hp), port_flags[1], str(gp)]
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return wait_ready(Server(proc, hp, gp, log=log), args[0], ready, timeout, poll=0.1)


def run_python(code: str, log: Path, port: int) -> subprocess.Popen[bytes]:
    """A standalone server script (``PORT`` substituted) in a subprocess."""
    with log.open("wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", code.replace("PORT", str(port))],
                                stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(log.read_text())
