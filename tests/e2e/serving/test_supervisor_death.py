"""Workers of a multi-worker server end when their supervisor is killed (SIGKILL): none
keeps serving on the shared listening socket as an orphan."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.server_process import children, gone_within

from .conftest import IMPLEMENTATIONS, SLOW, Server, start_server, write_custom

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


@pytest.fixture()
def server_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The servers' TMPDIR (where the supervisor makes the workers' shared folders)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


@contextlib.contextmanager
def killed_supervisor(server: Server) -> Iterator[list[int]]:
    """Wait for the two workers of ``server``, ``kill -9`` the supervisor, wait for the
    workers to be gone; yields their pids (any still alive are killed on the way out)."""
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
        yield workers
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_workers_exit_when_the_supervisor_is_killed(
    fresh_repo: Path, impl: str, server_tmp: Path
) -> None:
    write_custom(fresh_repo, "slow", SLOW)
    server = start_server(fresh_repo, "--workers", "2", *IMPLEMENTATIONS[impl])
    with killed_supervisor(server):
        assert refuses(server.http_port)
        assert refuses(server.grpc_port)
        # the last worker out removed the shared metrics folder; serve-model made no other
        assert list(server_tmp.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_last_worker_out_removes_the_model_dir_link(fresh_repo: Path, server_tmp: Path) -> None:
    """``--model_dir`` of one version is served through a link in a temporary folder: when
    the supervisor is killed, the last worker out removes it too."""
    write_custom(fresh_repo, "slow", SLOW)
    model_dir = str(fresh_repo / "slow" / "1")
    server = start_server(None, "--model_dir", model_dir, "--model_name", "slow", "--workers", "2")
    assert [p.name[:13] for p in server_tmp.glob("tureen-serve-*")] == ["tureen-serve-"]
    with killed_supervisor(server):
        assert list(server_tmp.iterdir()) == []
        assert (fresh_repo / "slow" / "1" / "model.py").is_file()  # the link's target stays


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def test_the_next_server_removes_a_killed_single_process_servers_folder(
    fresh_repo: Path, server_tmp: Path
) -> None:
    """With ``--workers 1`` no worker outlives a ``kill -9`` to remove the ``--model_dir``
    link folder: the next server that makes one removes it, and never a live server's."""
    write_custom(fresh_repo, "slow", SLOW)
    model_dir = str(fresh_repo / "slow" / "1")
    first = start_server(None, "--model_dir", model_dir, "--model_name", "slow")
    try:
        (orphan,) = server_tmp.glob("tureen-serve-*")
    finally:
        first.proc.kill()
        first.proc.wait()
    assert orphan.is_dir()  # nobody was left to remove it
    second = start_server(None, "--model_dir", model_dir, "--model_name", "slow")
    try:
        assert not orphan.exists()
        (live,) = server_tmp.glob("tureen-serve-*")
        third = start_server(None, "--model_dir", model_dir, "--model_name", "slow")
        try:
            assert live.is_dir() and len(list(server_tmp.glob("tureen-serve-*"))) == 2
        finally:
            _stop(third)
        assert live.is_dir()
    finally:
        _stop(second)
    assert list(server_tmp.iterdir()) == []
    assert (fresh_repo / "slow" / "1" / "model.py").is_file()  # the link's target stays
