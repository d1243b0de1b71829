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

from .conftest import IMPLEMENTATIONS, SLOW, start_server, write_custom

#: how long the workers may take to notice and drain (a bound, not a timing assert)
GONE_WITHIN_SECONDS = 15.0


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
        deadline = time.monotonic() + GONE_WITHIN_SECONDS
        while time.monotonic() < deadline and any(alive(p) for p in workers):
            time.sleep(0.2)
        assert [p for p in workers if alive(p)] == []
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
