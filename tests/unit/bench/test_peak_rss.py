"""Benchmarks report each child process's own peak memory, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_child_peak_rss_excludes_the_parent_that_started_it() -> None:
    # The parent touches 400 MiB, then starts a child that allocates almost nothing. Linux
    # carries the parent's high-water mark into the child's ru_maxrss across fork + exec,
    # so a child reading ru_maxrss would report >= 400 MiB here.
    ballast = bytearray(400 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    out = subprocess.run(
        [sys.executable, "-c", "from bench.workload import peak_rss_mib; print(peak_rss_mib())"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert 0 < float(out) < 200
    del ballast


def test_peak_rss_grows_with_what_the_process_itself_touches() -> None:
    code = ("from bench.workload import peak_rss_mib\n"
            "before = peak_rss_mib()\n"
            "b = bytearray(300 * 2**20)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\n"
            "print(peak_rss_mib() - before)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert float(out) >= 290
