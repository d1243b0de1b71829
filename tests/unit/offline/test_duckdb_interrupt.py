"""Ctrl-C during a DuckDB query in the main thread: the caller gets a KeyboardInterrupt (not
DuckDB's RuntimeError 'Query interrupted'), and only once the query has stopped and its
thread is joined, so nothing DuckDB runs while the caller cleans up or the process exits."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import numpy as np
import pyarrow as pa
import pytest

from tureen.offline.duckdb_engine import DuckDBEngine, _arrow

#: a scan of Arrow data registered from Python, as every point-in-time join does, that
#: runs for minutes unless stopped
ENDLESS = "SELECT count(*) FROM rows, range(1000000000) r(i) WHERE (a + i) % 7 = 3"


def _in(frame: FrameType | None, function: str = "_arrow") -> bool:
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def _press_ctrl_c(stop: threading.Event) -> None:
    """SIGINT to the main thread once it runs the endless query (its stack is in _arrow)."""
    main = threading.main_thread()
    assert main.ident is not None
    while not stop.is_set():
        if _in(sys._current_frames().get(main.ident)):
            signal.pthread_kill(main.ident, signal.SIGINT)
            return
        time.sleep(0.005)


def test_ctrl_c_stops_the_query_before_the_caller_hears_of_it(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path)
    stop = threading.Event()
    kicker = threading.Thread(target=_press_ctrl_c, args=(stop,), daemon=True)
    # Python's own Ctrl-C handler (a suite started in the background ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        kicker.start()
        with engine._cursor() as cur:
            cur.register("rows", pa.table({"a": np.arange(1_000_000)}))
            with pytest.raises(KeyboardInterrupt):
                _arrow(cur, ENDLESS, "an endless query")
            # the query has stopped: the cursor is free (DuckDB refuses a busy one)
            assert _arrow(cur, "SELECT 42 AS x", "a query").column("x").to_pylist() == [42]
    finally:
        stop.set()
        kicker.join()
        signal.signal(signal.SIGINT, previous)
    engine.close()


def test_ctrl_c_during_a_materialize_read_is_a_keyboard_interrupt(tmp_path: Path) -> None:
    """``latest_rows`` (what materialize streams from) stops the same way: a Ctrl-C while its
    query runs reaches the caller as KeyboardInterrupt, not as 'reading its source failed',
    and the engine stays usable."""
    from datetime import UTC, datetime, timedelta

    import pyarrow.parquet as pq

    from tureen.definitions import Entity, FeatureView, Field, FileSource
    from tureen.types import Int64

    n = 4_000_000
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    pq.write_table(pa.table({
        "driver_id": rng.integers(0, n // 2, n),
        "trips": rng.integers(0, 100, n),
        "event_timestamp": pa.array(np.full(n, int(t0.timestamp() * 1e6)) +
                                    rng.integers(0, 10**9, n), pa.timestamp("us", tz="UTC")),
    }), tmp_path / "s.parquet")
    view = FeatureView("stats", [Entity("driver", join_keys=["driver_id"], dtype=Int64)],
                       [Field("trips", Int64)], FileSource("s.parquet"))
    engine = DuckDBEngine(tmp_path)
    stop = threading.Event()

    def press() -> None:
        main = threading.main_thread()
        assert main.ident is not None
        while not stop.is_set():
            if _in(sys._current_frames().get(main.ident), "latest_rows"):
                time.sleep(0.3)  # inside the query (about 3 s here), past its set-up
                signal.pthread_kill(main.ident, signal.SIGINT)
                return
            time.sleep(0.002)

    kicker = threading.Thread(target=press, daemon=True)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        kicker.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in engine.latest_rows(view, None, t0 + timedelta(days=30)):
                pass
    finally:
        stop.set()
        kicker.join()
        signal.signal(signal.SIGINT, previous)
    # the engine answers again (the interrupted query has stopped)
    with engine._cursor() as cur:
        assert cur.execute("SELECT 42").fetchone() == (42,)
    engine.close()
