"""A lifeline reads EOF exactly when the process that made it let go of it: a process
forked from that one (a serving worker) does not keep it alive."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from tureen.lifeline import Lifeline, at_eof, watch_in_thread


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_does_not_hold_the_lifeline() -> None:
    line = Lifeline()
    child_end = os.dup(line.fd)  # what a child watching the line holds
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: alive until told, holding what it inherited
        os.read(stop_r, 1)
        os._exit(0)
    try:
        assert not at_eof(child_end)
        gone = threading.Event()
        watch_in_thread(child_end, gone.set)
        line.close()  # as if this process died: the forked child is still alive
        assert gone.wait(10)
        assert at_eof(child_end)
    finally:
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
        for fd in (child_end, stop_r, stop_w):
            os.close(fd)
