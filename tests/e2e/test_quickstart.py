"""``tureen quickstart`` itself: the README's first command must work end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    http_port, grpc_port = _free_port(), _free_port()
    proc = subprocess.run([*CLI, "quickstart", "--json", "--requests", "20",
                           "--keep", str(tmp_path / "repo"), "--http_port", str(http_port),
                           "--grpc-port", str(grpc_port)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    titles = [s["step"] for s in out["steps"]]
    assert titles[0].startswith("create") and titles[-1] == "shut the server down"
    assert len(out["predictions"]) == 5
    for p in out["predictions"]:
        assert 0.0 < p["p_fraud_v1"] < 1.0
        assert p["p_fraud_v1"] == p["p_fraud_v2"] == p["p_fraud_grpc"]
    assert set(out["latency_ms"]) == {"v1", "v2", "grpc"}
    assert out["metrics"]["auc"] > 0.5
    assert (tmp_path / "repo" / "models" / "fraud_model" / "1" / "model.joblib").is_file()
    assert "✓" in proc.stderr  # progress was shown
    server = next(s for s in out["steps"] if s["step"].startswith("start"))
    assert server["detail"] == f"http :{http_port}, grpc :{grpc_port}"  # the ports asked for


def test_quickstart_fails_with_nonzero_exit(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    proc = subprocess.run([*CLI, "quickstart", "--keep", str(tmp_path / "busy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "not empty" in proc.stderr
