"""Processes that run task attempts.

- ``fork``: forked from the runner, so a task starts in milliseconds with ``kfp``, tureen and
  the user's libraries already imported. Only safe from a process with a single thread:
  a child forked from a process whose other threads hold a lock (libgomp's OpenMP pool after
  scikit-learn or LightGBM trained something, say) can hang forever.
- ``forkserver``: forked from a clean single-threaded process (``forkserver``, started once
  per run with kfp and tureen's steps imported) — nearly as quick, whatever threads the
  caller has, and it never re-runs the caller's ``__main__`` (``multiprocessing``'s fork
  server does).
- ``subprocess``: a fresh ``python -m tureen.pipelines.worker`` per attempt (slowest).
- ``auto`` (the default): ``fork`` while this process has one thread (the live view refreshes
  from the scheduler loop, no thread; but numpy's BLAS starts threads when imported, as a
  runner computing a data snapshot does), else ``forkserver``; ``subprocess`` where fork does
  not exist.

Whatever the way, each attempt is its own process group: its environment variables, working
directory, crashes and ``sys.exit`` stay its own, and ``stop()`` ends it with its children.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tureen.pipelines.worker import Job, child_main

ISOLATIONS = ("auto", "fork", "forkserver", "subprocess")


def threads() -> int:
    """Threads of this process, native ones included (OpenMP, BLAS, DuckDB)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


@dataclass
class Running:
    job: Job
    pid: int
    started: float
    mode: str
    popen: subprocess.Popen[bytes] | None = None  # subprocess
    fd: int | None = None  # readable when the attempt may have ended (pidfd, fork server)


class ForkServer:
    """The runner's end of a ``tureen.pipelines.forkserver`` process."""

    def __init__(self) -> None:
        to_server, self._w = os.pipe()
        self.fd, from_server = os.pipe()
        src = str(Path(__file__).resolve().parents[2])  # tureen importable as in the runner
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [src, *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tureen.pipelines.forkserver", str(to_server),
                 str(from_server)], pass_fds=(to_server, from_server), env=env,
                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(to_server)
            os.close(from_server)
        os.set_blocking(self.fd, False)
        self._buf = b""
        self._seq = 0
        self.exits: dict[int, int] = {}

    def start(self, job: Job) -> int:
        self._seq += 1
        msg = {"seq": self._seq, "job": asdict(job), "environ": dict(os.environ),
               "path": list(sys.path)}
        data = (json.dumps(msg) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._w, data):]
        except BrokenPipeError:
            raise RuntimeError(f"the task fork server exited (code {self.proc.wait()}); "
                               "its error is above") from None
        while True:
            for event in self._read(block=True):
                if event.get("seq") == self._seq:
                    return int(event["pid"])

    def drain(self) -> None:
        """Record the exits the server has reported so far."""
        self._read(block=False)

    def _read(self, block: bool) -> list[dict[str, Any]]:
        events = []
        while True:
            if block and b"\n" not in self._buf:
                select.select([self.fd], [], [], 1.0)
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                data = None
            if data == b"":
                raise RuntimeError(f"the task fork server exited (code {self.proc.wait()}); "
                                   "its error is above")
            if data:
                self._buf += data
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                event = json.loads(line)
                if "code" in event:
                    self.exits[int(event["pid"])] = int(event["code"])
                events.append(event)
            if events or not block:
                return events

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._w)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Pool:
    def __init__(self, isolation: str | None = None) -> None:
        self.isolation = isolation or "auto"
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}")
        self.running: dict[int, Running] = {}
        self.server: ForkServer | None = None

    def __len__(self) -> int:
        return len(self.running)

    def _mode(self) -> str:
        if self.isolation != "auto":
            return self.isolation
        if not hasattr(os, "fork"):
            return "subprocess"
        return "fork" if sys.platform == "linux" and threads() == 1 else "forkserver"

    def start(self, job: Job) -> Running:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        mode = self._mode()
        if mode == "fork":
            r = self._fork(job)
        elif mode == "forkserver":
            if self.server is None:
                self.server = ForkServer()
            pid = self.server.start(job)
            r = Running(job, pid, time.monotonic(), mode, fd=self.server.fd)
        else:
            spec = Path(job.log_path).with_suffix(".job.json")
            spec.write_text(job.to_json())
            popen = subprocess.Popen([sys.executable, "-m", "tureen.pipelines.worker",
                                      str(spec)], stdin=subprocess.DEVNULL,
                                     start_new_session=True)
            r = Running(job, popen.pid, time.monotonic(), mode, popen)
        self.running[r.pid] = r
        return r

    def _fork(self, job: Job) -> Running:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            child_main(job)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins
        fd = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
        return Running(job, pid, time.monotonic(), "fork", fd=fd)

    def _poll(self, r: Running) -> int | None:
        if r.mode == "subprocess":
            assert r.popen is not None
            return r.popen.poll()
        if r.mode == "forkserver":
            assert self.server is not None
            return self.server.exits.pop(r.pid, None)
        try:
            pid, status = os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def wait(self, timeout: float) -> list[tuple[Running, int]]:
        """Attempts that ended within ``timeout`` seconds: (attempt, exit code)."""
        done = self._reap()
        if done or not self.running:
            return done
        fds = {r.fd for r in self.running.values() if r.fd is not None}
        if all(r.fd is not None for r in self.running.values()):
            with contextlib.suppress(InterruptedError):
                select.select(list(fds), [], [], timeout)
            return self._reap()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            done = self._reap()
            if done:
                return done
        return []

    def _reap(self) -> list[tuple[Running, int]]:
        if self.server is not None:
            self.server.drain()
        done = []
        for pid, r in list(self.running.items()):
            code = self._poll(r)
            if code is not None:
                del self.running[pid]
                if r.mode == "fork" and r.fd is not None:
                    os.close(r.fd)
                done.append((r, code))
        return done

    def stop(self, grace: float = 5.0) -> None:
        """End every running attempt (SIGTERM to its process group, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for r in self.running.values():
                try:
                    os.killpg(r.pid, sig)
                except (ProcessLookupError, PermissionError):  # not its own group yet
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(r.pid, sig)
            deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 30.0)
            while self.running and time.monotonic() < deadline:
                self.wait(0.05)

    def close(self) -> None:
        """Stop the fork server, if one was started (after ``stop()`` or when all ended)."""
        if self.server is not None:
            self.server.close()
            self.server = None
