"""DuckDB work that stops in order on Ctrl-C.

Run in the main thread, a DuckDB query notices SIGINT itself: it runs the Python signal
handler between its tasks and, when that raises, turns the KeyboardInterrupt into a
``RuntimeError('Query interrupted')`` while the process goes on unwinding. Who stops what,
and in which order, then depends on where the signal lands.

``interruptible(cur, work)`` makes it one order. In the main thread ``work`` runs in a worker
thread, which never runs signal handlers; the main thread waits for it, and a Ctrl-C reaches
the main thread as a KeyboardInterrupt there. Then the query is stopped with
``cur.interrupt()`` and the worker joined (a second Ctrl-C does not cut that short) before
the KeyboardInterrupt goes on: when the caller removes staged output, closes the connection
or the interpreter exits, no DuckDB work is running. Outside the main thread, where no
signal arrives, ``work`` runs in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def interruptible(cur: Any, work: Callable[[], T]) -> T:
    """``work()`` (DuckDB calls on the cursor ``cur``), stopped and waited for on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    outcome: list[Any] = []
    go = threading.Event()  # the worker may start: start() returned, or it is cancelled
    done = threading.Event()  # the worker has finished with DuckDB
    cancelled = False

    def run() -> None:
        try:
            go.wait()
            if not cancelled:
                outcome.append((True, work()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    # Waits on events, not Thread.join: in Python 3.11 a join cut short by Ctrl-C can mark
    # a thread that is still running as stopped, and later joins return at once.
    worker = threading.Thread(target=run, name="tureen-duckdb", daemon=True)
    try:
        worker.start()  # a Ctrl-C can land here too: then the worker is cancelled
        go.set()
        done.wait()
    except BaseException:
        if not go.is_set():
            cancelled = True
        _stop(cur, worker, go, done)
        outcome.clear()  # the query's own error ("interrupted") is not the news
        raise
    ok, value = outcome.pop()
    if not ok:
        raise value
    result: T = value
    return result


def _stop(cur: Any, worker: threading.Thread, go: threading.Event,
          done: threading.Event) -> None:
    """Interrupt the query until the worker is done with it (an interrupt that comes before
    the query starts is forgotten by DuckDB, so it is repeated while waiting)."""
    while True:
        try:
            go.set()
            if worker.ident is None:  # never started
                return
            while not done.wait(0.05):
                cur.interrupt()
            return
        except KeyboardInterrupt:
            continue  # Ctrl-C again: still wait, the query is being stopped
