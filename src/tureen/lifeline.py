"""A child process learns that its parent died, even by SIGKILL: a lifeline pipe.

The parent makes a ``Lifeline`` (a pipe) and keeps its write end; a child gets the read end
(by fork, or ``pass_fds``) and watches it. Nothing is ever written: the read end reaches
end-of-file exactly when every write end is closed, that is when the parent process is gone.
(``PR_SET_PDEATHSIG`` fires when the forking *thread* ends, and while a killed parent is still
exiting, so a child cannot tell from it whether it is orphaned.) Any process forked from the
parent (a serving worker) closes the write ends it inherited at once, so only the parent holds
them; an exec'd child never inherits them (the pipe is not inheritable).

Users: the serving supervisor and its workers (``tureen.serving.server``), and ``tureen serve
--ingest`` and its ``tureen ingest`` child (``--lifeline-fd``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
from collections.abc import Callable

#: write ends this process holds for its children; a forked child closes them
_HELD: set[int] = set()


def _close_held() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held)


class Lifeline:
    """The parent's side. ``fd`` is the read end for children: forked ones inherit it, a
    subprocess gets it with ``pass_fds=(line.fd,)``. ``release()`` once they have it;
    ``close()`` when the children are done (they see EOF, as if this process had died)."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        _HELD.add(self._write)

    def release(self) -> None:
        """Close this process's copy of the read end (the children keep theirs)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.release()
        if self._write in _HELD:
            _HELD.discard(self._write)
            os.close(self._write)


def at_eof(fd: int) -> bool:
    """Whether the lifeline ``fd`` reads end-of-file now (the parent is gone)."""
    try:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable) and os.read(fd, 1) == b""
    except OSError:
        return False


def watch(loop: asyncio.AbstractEventLoop, fd: int, on_eof: Callable[[], None]) -> None:
    """Call ``on_eof`` on ``loop`` once, when the lifeline ``fd`` reaches end-of-file."""

    def readable() -> None:
        if at_eof(fd):
            loop.remove_reader(fd)
            on_eof()

    loop.add_reader(fd, readable)


def watch_in_thread(fd: int, on_eof: Callable[[], None]) -> threading.Thread:
    """Call ``on_eof`` from a daemon thread once the lifeline ``fd`` reaches end-of-file
    (for a process without an event loop)."""

    def wait() -> None:
        while True:
            try:
                if os.read(fd, 1) == b"":
                    break
            except InterruptedError:
                continue
            except OSError:
                return  # closed here: nobody is watching any more
        on_eof()

    thread = threading.Thread(target=wait, name="lifeline", daemon=True)
    thread.start()
    return thread
