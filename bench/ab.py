"""Same-run ratios that hold on a shared machine: short alternating windows, median of per-round
ratios.

A group of points (say KServe and tureen on gRPC at 16 connections) is measured in rounds of one
short window per point, every other round in reverse order (A B, B A, A B, ...), while the
servers stay up. A drift in background load then hits both sides of a ratio alike, and a burst
from another process lands in one or two rounds instead of on one side of the whole ratio. A
ratio is the median of its per-round ratios, reported with its quartiles and extremes; absolute
numbers are medians over windows. The load average is recorded before and after each group.

    windows, conditions = measure_groups({"grpc": ["kserve", "tureen"]}, measure, rounds=8)
    paired_ratio(windows["tureen"], windows["kserve"], "requests_per_s")   # {"median": ...}
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Window = dict[str, float]
#: window fields that count events: summed over windows, not a median
COUNTS = frozenset({"errors", "socket", "ok_2xx", "requests"})


def round_orders(members: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of the windows in each round: as given, then reversed, alternately."""
    return [list(members) if r % 2 == 0 else list(reversed(members)) for r in range(rounds)]


def per_round_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """num[i] / den[i] for every round where both sides measured something."""
    if len(num) != len(den):
        raise ValueError(f"unpaired windows: {len(num)} against {len(den)}")
    return [a / b for a, b in zip(num, den, strict=True) if b and math.isfinite(a / b)]


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, quartiles, extremes and count of ``values`` (NaN when there are none)."""
    if not values:
        nan = float("nan")
        return {"median": nan, "q1": nan, "q3": nan, "min": nan, "max": nan, "n": 0}
    q1, _, q3 = (statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1
                 else (values[0],) * 3)
    return {"median": round(statistics.median(values), digits), "q1": round(q1, digits),
            "q3": round(q3, digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def paired_ratio(num: Sequence[Window], den: Sequence[Window], key: str) -> dict[str, float]:
    """The spread of ``num[i][key] / den[i][key]`` over the rounds both were measured in."""
    return spread(per_round_ratios([w[key] for w in num], [w[key] for w in den]))


def summarize(windows: Sequence[Window]) -> dict[str, float]:
    """Medians over windows of each field; counts (errors) summed."""
    keys = dict.fromkeys(k for w in windows for k in w)
    return {k: (sum(w.get(k, 0) for w in windows) if k in COUNTS
                else round(statistics.median(w[k] for w in windows if k in w), 3)) for k in keys}


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live descendants (Linux /proc)."""
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5)
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(cpu.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(run: Callable[[], Window], pid: int | None) -> Window:
    """``run()``'s window plus ``server_cpu_us_per_request``: the CPU the server process tree
    spent during it per request answered (less moved by other processes' load than
    throughput; resolution one clock tick, 10 ms, over the window)."""
    if pid is None:
        return run()
    before, t0 = tree_cpu_seconds(pid), time.monotonic()
    window = run()
    spent, took = tree_cpu_seconds(pid) - before, time.monotonic() - t0
    requests = window.get("requests") or window["requests_per_s"] * took
    window["server_cpu_us_per_request"] = round(spent / requests * 1e6, 1) if requests else 0.0
    return window


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_groups(
    groups: Mapping[str, Sequence[str]],
    measure: Callable[[str], Window],
    rounds: int,
    warmup: Callable[[str], Any] | None = None,
) -> tuple[dict[str, list[Window]], dict[str, dict[str, Any]]]:
    """Each group's points in ``rounds`` alternating rounds (``warmup`` once per point first).

    Returns every point's windows in round order (window i of two points of one group were
    measured in the same round), and per group the load average before and after its rounds
    and how long they took. A point belongs to one group.
    """
    seen = [k for members in groups.values() for k in members]
    if len(seen) != len(set(seen)):
        raise ValueError(f"a point is in more than one group: {seen}")
    windows: dict[str, list[Window]] = {}
    conditions: dict[str, dict[str, Any]] = {}
    for name, members in groups.items():
        if warmup is not None:
            for key in members:
                warmup(key)
        before, t0 = loadavg(), time.monotonic()
        for order in round_orders(members, rounds):
            for key in order:
                windows.setdefault(key, []).append(measure(key))
        conditions[name] = {"loadavg_before": before, "loadavg_after": loadavg(),
                            "seconds": round(time.monotonic() - t0, 1)}
    return windows, conditions



def add_arguments(ap: argparse.ArgumentParser, group: str, only_help: str) -> None:
    """``--window``, ``--pairs``, ``--warmup`` and ``--only`` (a ``group`` is what a round
    covers, e.g. "surface")."""
    ap.add_argument("--window", type=int, default=1,
                    help="seconds per measurement window (whole seconds: wrk's -d)")
    ap.add_argument("--pairs", type=int, default=8,
                    help=f"rounds per {group}: each ratio is the median of this many per-round "
                         "ratios (alternating order, so an even number cancels a drift)")
    ap.add_argument("--warmup", type=int, default=1,
                    help=f"seconds of unrecorded load per point before its {group} (0: none)")
    ap.add_argument("--only", default=None, help=only_help)
    ap.add_argument("--raw", action="store_true",
                    help="also print every window's numbers (``windows``, in round order)")
