"""Issue 11 #12: a second server started on a running server's ports used to join it
silently (SO_REUSEPORT) and take part of its traffic. Only a server's own workers share its
sockets; a second start fails at once with the one-line "port in use" error. Checked with
two workers on both server flavours (grpcio binds per worker: the path that still uses
SO_REUSEPORT between its own workers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.e2e.conformance.conftest import SERVERS, free_port, start
from tests.e2e.conformance.h2peer import legit_call

pytestmark = pytest.mark.slow


def second_start(repo: Path, http_port: int, grpc_port: int, *flags: str,
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve-model",
         "--model_repository", str(repo), "--host", "127.0.0.1", "--http_port",
         str(http_port), "--grpc_port", str(grpc_port), *flags],
        capture_output=True, text=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("kind", list(SERVERS))
def test_12_a_second_server_on_the_same_ports_fails_and_never_joins(
        kind: str, model_repo: Path, tmp_path: Path) -> None:
    flags = (*SERVERS[kind], "--workers", "2")
    http_port, grpc_port = free_port(), free_port()
    first = start(model_repo, tmp_path / "first.log", "--workers", "2", *SERVERS[kind],
                  ports=(http_port, grpc_port))
    try:
        line = one_line(second_start(model_repo, http_port, grpc_port, *flags))
        assert f"127.0.0.1:{http_port} (HTTP)" in line and "already in use" in line
        assert "--http_port" in line
        # another HTTP port, the same gRPC port: the gRPC socket is the one refused
        line = one_line(second_start(model_repo, free_port(), grpc_port, *flags))
        assert f"127.0.0.1:{grpc_port} (gRPC)" in line and "--grpc_port" in line
        for _ in range(20):  # every call still reaches the first server
            assert legit_call(first.grpc_target)
            assert httpx.get(f"{first.url}/v2/health/ready", timeout=5).status_code == 200
    finally:
        assert first.stop() == 0, (tmp_path / "first.log").read_text()[-3000:]
