"""bench/ab.py: alternating windows and the median of per-round ratios."""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

# loaded by path: under pytest's importlib mode the name ``bench`` is this test folder
_spec = importlib.util.spec_from_file_location(
    "bench_ab", Path(__file__).resolve().parents[3] / "bench" / "ab.py")
assert _spec is not None and _spec.loader is not None
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)
measure_groups, paired_ratio, per_round_ratios = ab.measure_groups, ab.paired_ratio, \
    ab.per_round_ratios
round_orders, spread, summarize = ab.round_orders, ab.spread, ab.summarize


def test_rounds_alternate_so_each_pair_runs_a_b_b_a() -> None:
    assert round_orders(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert round_orders(["off", "token", "oidc"], 2) == [["off", "token", "oidc"],
                                                         ["oidc", "token", "off"]]


def test_a_drift_in_load_cancels_round_by_round() -> None:
    # the machine slows down 5% per window; B is half as fast as A
    speed = iter(1.0 - 0.05 * i for i in range(16))
    measured: dict[str, list[float]] = {"a": [], "b": []}
    for order in round_orders(["a", "b"], 8):
        for key in order:
            measured[key].append((100.0 if key == "a" else 50.0) * next(speed))
    ratios = per_round_ratios(measured["a"], measured["b"])
    # within a round the later window is 5% slower; the order alternates, so the median of
    # the per-round ratios sits in the middle of the two biases: 2.0 within the drift
    assert len(ratios) == 8
    assert statistics.median(ratios) == pytest.approx(2.0, rel=0.03)
    assert min(ratios) < 2.0 < max(ratios)


def test_a_burst_on_one_side_moves_the_spread_not_the_median() -> None:
    a = [{"requests_per_s": 1000.0} for _ in range(8)]
    b = [{"requests_per_s": 250.0} for _ in range(8)]
    b[3] = {"requests_per_s": 100.0}  # another process took the cores for this window
    b[4] = {"requests_per_s": 120.0}
    sp = paired_ratio(a, b, "requests_per_s")
    assert sp["median"] == 4.0
    assert sp["max"] == 10.0 and sp["min"] == 4.0 and sp["n"] == 8


def test_rounds_with_nothing_measured_are_left_out() -> None:
    assert per_round_ratios([10.0, 10.0, 10.0], [5.0, 0.0, 2.0]) == [2.0, 5.0]
    with pytest.raises(ValueError, match="unpaired"):
        per_round_ratios([1.0], [1.0, 2.0])


def test_spread_quartiles_and_edges() -> None:
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0,
                                                 "min": 1.0, "max": 5.0, "n": 5}
    assert spread([0.5]) == {"median": 0.5, "q1": 0.5, "q3": 0.5, "min": 0.5, "max": 0.5,
                             "n": 1}
    empty = spread([])
    assert empty["n"] == 0 and math.isnan(empty["median"])


def test_summarize_takes_medians_and_sums_counts() -> None:
    windows = [{"requests_per_s": 10.0, "p99_ms": 3.0, "errors": 0},
               {"requests_per_s": 30.0, "p99_ms": 1.0, "errors": 2},
               {"requests_per_s": 20.0, "p99_ms": 2.0, "errors": 1}]
    assert summarize(windows) == {"requests_per_s": 20.0, "p99_ms": 2.0, "errors": 3}


def test_measure_groups_pairs_windows_by_round_and_records_conditions() -> None:
    calls: list[str] = []
    warmed: list[str] = []

    def measure(key: str) -> dict[str, float]:
        calls.append(key)
        return {"requests_per_s": float(len(calls))}

    windows, conditions = measure_groups({"g1": ["a", "b"], "g2": ["c"]}, measure, 4,
                                         warmup=warmed.append)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a", "c", "c", "c", "c"]
    assert warmed == ["a", "b", "c"]
    assert [w["requests_per_s"] for w in windows["a"]] == [1.0, 4.0, 5.0, 8.0]
    assert [w["requests_per_s"] for w in windows["b"]] == [2.0, 3.0, 6.0, 7.0]
    assert set(conditions) == {"g1", "g2"}
    assert len(conditions["g1"]["loadavg_before"]) == 3
    assert "loadavg_after" in conditions["g1"] and "seconds" in conditions["g1"]
    with pytest.raises(ValueError, match="more than one group"):
        measure_groups({"g1": ["a"], "g2": ["a"]}, measure, 1)


def test_tree_cpu_counts_a_server_and_its_workers() -> None:
    # a "server" whose worker child spends 0.3 s of CPU, then both wait: the tree's CPU
    # includes the worker's (process time, not wall time, so a busy machine does not matter)
    burn = ("import time\n"
            "while time.process_time() < 0.3: pass\n"
            "print('done', flush=True); sys.stdin.read()\n")
    code = ("import subprocess, sys\n"
            f"w = subprocess.Popen([sys.executable, '-c', 'import sys\\n' + {burn!r}], "
            "stdout=subprocess.PIPE, text=True)\n"
            "print(w.stdout.readline().strip(), flush=True); sys.stdin.read(); w.wait()\n")
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None and server.stdout.readline().strip() == "done"
        assert 0.29 <= ab.tree_cpu_seconds(server.pid) < 5


def test_server_cpu_per_request_of_a_window() -> None:
    window = ab.with_server_cpu(lambda: {"requests_per_s": 1000.0, "requests": 0}, None)
    assert window == {"requests_per_s": 1000.0, "requests": 0}
    # this process as the "server": its own CPU over the requests the window reports
    window = ab.with_server_cpu(lambda: {"requests_per_s": 10.0, "requests": 10,
                                         "spent": sum(range(3_000_000))}, os.getpid())
    assert window["server_cpu_us_per_request"] >= 0
