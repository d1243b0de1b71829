"""Processes that run task attempts: forked from the runner (Linux; the default) so a task
starts in milliseconds with ``kfp`` and the user's libraries already imported, or started
fresh with ``python -m tureen.pipelines.worker`` (``isolation="subprocess"``).

Either way each attempt is its own process group: its environment variables, working
directory, crashes and ``sys.exit`` stay its own, and ``stop()`` ends it with its children.
The runner has no threads of its own when it forks (the live view refreshes from the
scheduler loop), so a forked child never inherits a lock held by another thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tureen.pipelines.worker import Job, child_main

ISOLATIONS = ("fork", "subprocess")


def default_isolation() -> str:
    return "fork" if sys.platform == "linux" and hasattr(os, "fork") else "subprocess"


@dataclass
class Running:
    job: Job
    pid: int
    started: float
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None


class Pool:
    def __init__(self, isolation: str | None = None) -> None:
        self.isolation = isolation or default_isolation()
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}")
        self.running: dict[int, Running] = {}

    def __len__(self) -> int:
        return len(self.running)

    def start(self, job: Job) -> Running:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        if self.isolation == "fork":
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child never returns
                child_main(job)
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)  # also done by the child; whichever runs first wins
            pidfd = None
            if hasattr(os, "pidfd_open"):
                with contextlib.suppress(OSError):
                    pidfd = os.pidfd_open(pid)
            r = Running(job, pid, time.monotonic(), pidfd=pidfd)
        else:
            spec = Path(job.log_path).with_suffix(".job.json")
            spec.write_text(job.to_json())
            proc = subprocess.Popen([sys.executable, "-m", "tureen.pipelines.worker", str(spec)],
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            r = Running(job, proc.pid, time.monotonic(), proc=proc)
        self.running[r.pid] = r
        return r

    def _poll(self, r: Running) -> int | None:
        if r.proc is not None:
            return r.proc.poll()
        try:
            pid, status = os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def wait(self, timeout: float) -> list[tuple[Running, int]]:
        """Attempts that ended within ``timeout`` seconds: (attempt, exit code)."""
        done = self._reap()
        if done or not self.running:
            return done
        fds = [r.pidfd for r in self.running.values() if r.pidfd is not None]
        if fds and len(fds) == len(self.running):
            with contextlib.suppress(InterruptedError):
                select.select(fds, [], [], timeout)
            return self._reap()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            done = self._reap()
            if done:
                return done
        return []

    def _reap(self) -> list[tuple[Running, int]]:
        done = []
        for pid, r in list(self.running.items()):
            code = self._poll(r)
            if code is not None:
                del self.running[pid]
                if r.pidfd is not None:
                    os.close(r.pidfd)
                done.append((r, code))
        return done

    def stop(self, grace: float = 5.0) -> None:
        """End every running attempt (SIGTERM to its process group, then SIGKILL)."""
        for r in self.running.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            self.wait(0.05)
        for r in self.running.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.pid, signal.SIGKILL)
        while self.running:
            self.wait(0.05)
