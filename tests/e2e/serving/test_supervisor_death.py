"""Workers of a multi-worker server end when their supervisor is killed (SIGKILL): none
keeps serving on the shared listening socket as an orphan."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from tests.e2e.server_process import children, gone_within

from .conftest import IMPLEMENTATIONS, SLOW, start_server, write_custom

#: how long the workers may take to notice and drain (a bound, not a timing assert)
GONE_WITHIN_SECONDS = 15.0


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_workers_exit_when_the_supervisor_is_killed(
    fresh_repo: Path, impl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_custom(fresh_repo, "slow", SLOW)
    tmp = tmp_path / "tmp"  # where the supervisor makes the workers' shared metrics folder
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    server = start_server(fresh_repo, "--workers", "2", *IMPLEMENTATIONS[impl])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = children(server.proc.pid)
            time.sleep(0.1)
        assert len(workers) == 2, workers
        server.proc.kill()
        server.proc.wait()
        assert gone_within(workers, GONE_WITHIN_SECONDS) == []
        assert refuses(server.http_port)
        assert refuses(server.grpc_port)
        assert list(tmp.glob("tureen-metrics-*")) == []  # the last worker out removed it
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()

