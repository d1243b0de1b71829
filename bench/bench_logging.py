"""Inference logging overhead and model-swap latency on the fused quickstart deployment.

Builds the quickstart repo (``tureen quickstart --keep``), registers its model twice and
declares two deployments with the quickstart's fused transformer settings: ``q-none``
(logging NONE) and ``q-all`` (logging ALL to the default Parquet sink). One ``tureen serve``
serves both. A client process drives each deployment in turn with ``--concurrency``
single-row v1 requests for ``--seconds`` per round, alternating NONE/ALL for ``--rounds``
rounds; the JSON reports the median throughput of each and their ratio (target ≥ 0.90),
and, because a shared 2-core machine makes wall-clock rounds swing, the server process's
CPU time per request in each mode (including the logger thread's work, measured over the
round and a pause that lets the logger finish): its inverse ratio is the capacity ratio.

Then, under the same load on ``q-all``, the served version is switched ``--swaps`` times
(1 → 2 → 1 …, every 4 s, as ``deploy update`` does); the inference log tells when the new
version first answered. Per swap: p99 over the 2 s before the update (steady state) and p99
over the requests sent within ±1 s of the switch (target: ≤ 2x steady); the median ratio
and the number of failed requests (must be 0) are reported.

Usage: ``python bench/bench_logging.py [--root DIR] [--rounds 8] [--seconds 2] [--swaps 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tureen(*args: str) -> str:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"tureen {' '.join(args)}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def setup(root: Path) -> tuple[Path, list[int]]:
    repo = root / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    _tureen("quickstart", "--keep", str(repo), "--requests", "5", "--json")
    cfg = yaml.safe_load((repo / "tureen.yaml").read_text())
    transformer = dict(cfg["serving"]["transformers"][0])
    model = transformer["predictor"]["model"]
    # the deployments take the quickstart transformer's settings (keys, missing defaults)
    (repo / "transformer.yaml").write_text(yaml.safe_dump(transformer))
    cfg["serving"].pop("transformers")
    (repo / "tureen.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    v1 = repo / "models" / model / "1"
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("model.joblib", "model-settings.json"):
            shutil.copy2(v1 / f, Path(tmp) / f)
        _tureen("models", "register", model, tmp, "-f", "sklearn", "--repo", str(repo))
    for name, mode in (("q-none", "NONE"), ("q-all", "ALL")):
        _tureen("deploy", "create", name, "--model", f"{model}:1", "--feature-service",
                transformer["feature_service"], "--transformer", str(repo / "transformer.yaml"),
                "--logging", mode, "--repo", str(repo))
        _tureen("deploy", "start", name, "--repo", str(repo))
    accounts = [int(a) for a in pd.read_parquet(
        repo / "data" / "account_profile.parquet")["account_id"].unique()[:200]]
    return repo, accounts


def _client(url: str, accounts: list[int], concurrency: int, seconds: float,
            q: multiprocessing.Queue[Any]) -> None:
    async def run() -> tuple[int, int, list[tuple[float, float]]]:
        ok = failed = 0
        lat: list[tuple[float, float]] = []
        stop = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as c:
            async def worker(i: int) -> None:
                nonlocal ok, failed
                n = i
                while time.monotonic() < stop:
                    body = {"instances": [{"account_id": accounts[n % len(accounts)],
                                           "amount": 42.0 + n % 7}]}
                    n += concurrency
                    t0 = time.time()
                    p0 = time.perf_counter()
                    try:
                        r = await c.post(url, json=body)
                        good = r.status_code == 200
                    except httpx.HTTPError:
                        good = False
                    lat.append((t0, time.perf_counter() - p0))
                    if good:
                        ok += 1
                    else:
                        failed += 1
            await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return ok, failed, lat

    q.put(asyncio.run(run()))


def drive(url: str, accounts: list[int], concurrency: int, seconds: float
          ) -> tuple[int, int, list[tuple[float, float]]]:
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[Any] = ctx.Queue()
    p = ctx.Process(target=_client, args=(url, accounts, concurrency, seconds, q))
    p.start()
    out = q.get(timeout=seconds + 120)
    p.join(30)
    return tuple(out)


def log_call_cost(n: int = 100_000) -> dict[str, float]:
    """Microseconds per ``InferenceLogger.log`` on the request path (record built + queued),
    against the bare lower bound of appending to a deque; the sink is a real Parquet sink."""
    import collections

    import numpy as np

    from tureen.inference_log import InferenceLogger, InferenceRecord
    from tureen.inference_log.sinks.parquet import ParquetSink

    x = np.ones((1, 7))
    out = np.array([0.3])
    with tempfile.TemporaryDirectory() as tmp:
        logger = InferenceLogger(ParquetSink(tmp), "ALL", capacity=n + 1)
        t0 = time.perf_counter()
        for i in range(n):
            logger.log(InferenceRecord(str(i), "d", "m", "1", x, out))
        per_call = (time.perf_counter() - t0) / n
        dq: collections.deque[Any] = collections.deque()
        t0 = time.perf_counter()
        for i in range(n):
            dq.append(InferenceRecord(str(i), "d", "m", "1", x, out))
        bare = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        logger.close()
        close_s = time.perf_counter() - t0
        written = logger.stats().written
    return {"log_call_us": per_call * 1e6, "bare_deque_append_us": bare * 1e6,
            "records": n, "written_on_close": written, "close_flush_s": close_s}


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--swaps", type=int, default=4)
    args = ap.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="tureen-bench-logging-"))
    root.mkdir(parents=True, exist_ok=True)
    cost = log_call_cost()
    repo, accounts = setup(root)
    port = _port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([*CLI, "serve", "--repo", str(repo), "--host", "127.0.0.1",
                             "--http-port", str(port), "--grpc-port", str(_port())],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v2/models/q-all/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        for name in ("q-none", "q-all"):  # warm up both
            drive(f"{base}/v1/models/{name}:predict", accounts, args.concurrency, 1.0)
        rps: dict[str, list[float]] = {"NONE": [], "ALL": []}
        cpu_us: dict[str, list[float]] = {"NONE": [], "ALL": []}
        failures = 0
        for _ in range(args.rounds):
            for name, mode in (("q-none", "NONE"), ("q-all", "ALL")):
                cpu0 = _cpu_seconds(proc.pid)
                ok, failed, _lat = drive(f"{base}/v1/models/{name}:predict", accounts,
                                         args.concurrency, args.seconds)
                rps[mode].append(ok / args.seconds)
                failures += failed
                # let the logger write this round's records before the next round starts, so
                # its work is charged to the round that logged (the same pause after both)
                time.sleep(2.0)
                cpu_us[mode].append((_cpu_seconds(proc.pid) - cpu0) / max(ok, 1) * 1e6)

        # ---- swaps under load: 1 -> 2 -> 1 -> ... every 4 s -----------------------------
        ctx = multiprocessing.get_context("spawn")
        q: multiprocessing.Queue[Any] = ctx.Queue()
        swap_seconds = 4.0 * args.swaps + 3.0
        p = ctx.Process(target=_client, args=(f"{base}/v1/models/q-all:predict", accounts,
                                              args.concurrency, swap_seconds, q))
        p.start()
        from tureen.deployments import Deployments

        deps = Deployments.for_repo(repo)
        updates: list[tuple[float, int]] = []
        time.sleep(3.0)
        for i in range(args.swaps):
            target = 2 if i % 2 == 0 else 1
            updates.append((time.time(), target))
            deps.update("q-all", target)
            time.sleep(4.0)
        ok, failed, lat = q.get(timeout=swap_seconds + 120)
        p.join(30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    from tureen.inference_log.dataset import read_log

    table = read_log(str(repo / "data" / "inference_log"), "q-all").to_pandas()
    swaps = []
    for t_update, target in updates:
        after = table[(table["model_version"] == str(target))
                      & (table["timestamp"] >= pd.Timestamp(t_update, unit="s", tz="UTC"))]
        t_switch = float(after["timestamp"].min().timestamp()) if len(after) else float("nan")
        steady = [d for t, d in lat if t_update - 2.0 <= t < t_update]
        during = [d for t, d in lat if t_switch - 1.0 <= t <= t_switch + 1.0]
        swaps.append({"to_version": target, "switch_s_after_update": t_switch - t_update,
                      "steady_p99_ms": _p99(steady) * 1000, "swap_p99_ms": _p99(during) * 1000,
                      "ratio": _p99(during) / _p99(steady), "n_steady": len(steady),
                      "n_swap": len(during)})
    result = {
        "bench": "inference logging on the fused quickstart deployment (tureen serve, v1)",
        "concurrency": args.concurrency, "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "request_path_cost": cost,
        "rps_logging_none": rps["NONE"], "rps_logging_all_parquet": rps["ALL"],
        "median_rps_none": statistics.median(rps["NONE"]),
        "median_rps_all": statistics.median(rps["ALL"]),
        "ratio_all_over_none": statistics.median(rps["ALL"]) / statistics.median(rps["NONE"]),
        # wall-clock rounds swing with whatever else runs on the machine; the server's CPU
        # time per request does not, and its inverse ratio is the capacity ratio
        "server_cpu_us_per_request_none": cpu_us["NONE"],
        "server_cpu_us_per_request_all": cpu_us["ALL"],
        "capacity_ratio_all_over_none_by_cpu": statistics.median(cpu_us["NONE"])
        / statistics.median(cpu_us["ALL"]),
        "failed_requests_throughput_rounds": failures,
        "logged_rows_q_all": len(table),
        "swaps": swaps,
        "median_swap_p99_over_steady_p99": statistics.median(x["ratio"] for x in swaps),
        "swap_run_failed_requests": failed, "swap_run_ok_requests": ok,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
