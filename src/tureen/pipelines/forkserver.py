"""A clean process that forks task attempts for a runner that must not fork itself.

A runner whose process has other threads (a notebook that trained a model with OpenMP, a
server) cannot fork safely: the child inherits locks those threads held and may wait on
them forever (libgomp does). ``pool`` then starts this module once per run, as
``python -m tureen.pipelines.forkserver RFD WFD``: a fresh single-threaded interpreter that
imports what every task needs (``preload``) and forks one child per attempt, so an attempt
still starts in milliseconds.

Protocol, one JSON object per line: the runner writes ``{"seq", "job", "environ", "path"}``
to RFD; the server answers ``{"seq", "pid"}`` once the child exists and
``{"pid", "code"}`` when it ends. The child takes the runner's current environment and
``sys.path`` (not the server's, which were the runner's when the server started), becomes
its own process group and runs the attempt like a child forked from the runner. The server
ignores Ctrl-C (the runner ends attempts itself) and exits when the runner closes RFD or
dies; its children die with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
from typing import Any


def _send(wfd: int, msg: dict[str, Any]) -> None:
    data = (json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(wfd, data):]


def _fork(msg: dict[str, Any], keep_closed: list[int]) -> int:
    from tureen.pipelines.worker import Job, child_main

    job = Job(**msg["job"])
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        for fd in keep_closed:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.environ.clear()
        os.environ.update(msg["environ"])
        sys.path[:] = msg["path"]
        child_main(job)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done by the child; whichever runs first wins
    return pid


def serve(rfd: int, wfd: int) -> None:
    children: dict[int, int | None] = {}  # pid -> pidfd
    buf = b""
    while True:
        fds = [rfd] + [fd for fd in children.values() if fd is not None]
        timeout = None if all(fd is not None for fd in children.values()) else 0.02
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(fds, [], [], timeout)
        for pid, fd in list(children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 1 << 8
            if done:
                del children[pid]
                if fd is not None:
                    os.close(fd)
                _send(wfd, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})
        if rfd not in ready:
            continue
        data = os.read(rfd, 1 << 16)
        if not data:
            return  # the runner is gone (or done): children die with us (PDEATHSIG)
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            pid = _fork(msg, [rfd, wfd, *(fd for fd in children.values() if fd is not None)])
            pidfd = None
            if hasattr(os, "pidfd_open"):
                with contextlib.suppress(OSError):
                    pidfd = os.pidfd_open(pid)
            children[pid] = pidfd
            _send(wfd, {"seq": msg["seq"], "pid": pid})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rfd, wfd = int(args[0]), int(args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import tureen.pipelines.preload  # noqa: F401

    try:
        serve(rfd, wfd)
    except BrokenPipeError:  # the runner stopped reading: it is gone
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
