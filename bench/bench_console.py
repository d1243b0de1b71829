"""The web console at scale: server time per page, SSE log delivery to a real browser, and
inference throughput while a browser watches a deployment.

1. **Pages**: a repo with 200 feature views, 1,000 versions of one model and 50
   deployments (plus pipeline runs and log lines). Every page and its JSON twin is called
   through the console's ASGI app in process (no network: server time only), ``--requests``
   times per round for ``--rounds`` rounds; per page the median over rounds of each round's
   median, and the worst round's p95, against the 50 ms target.
2. **SSE**: ``tureen console`` in a subprocess; Chromium (Playwright) opens a deployment's
   live log page; the script appends a line to the deployment's log file every 150 ms and
   the page records when each appears in the table. Reported: median / p95 / max delivery
   time (target ≤ 200 ms).
3. **Serving while watched**: two ``tureen serve`` processes over the same repo and a
   started fused deployment (feature lookup + model): one with ``--no-console``, one with
   the console mounted and the browser on the deployment's page (status and log streams
   open). ``wrk`` drives each in turn (alternating rounds, 16 connections, single-row KServe
   v1 requests); the ratio of median throughputs, and of the server's CPU time per request,
   is the console's cost (target ≥ 0.97). Because wall-clock rounds swing on a shared
   machine, the console server's own CPU is also measured without load, with the browser
   away and watching: the difference, against the serving CPU at the plain rate, gives the
   capacity ratio a watching browser leaves.

Usage: ``python bench/bench_console.py [--root DIR] [--rounds 3] [--requests 20]
[--seconds 5] [--no-browser]``. Prints JSON (with the load average before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MODEL_PY = """
import numpy as np
from tureen.serving import Model


class Zero(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return np.zeros(len(self.decode(payload)))
"""
VIEW = '''
bench_view_{i:03d} = FeatureView(
    name="bench_view_{i:03d}", entities=[account],
    schema=[Field("credit_score", Int64, description="score {i}"),
            Field("account_age_days", Int64), Field("has_2fa_installed", Bool)],
    source=FileSource(path="data/account_profile.parquet", timestamp_field="event_timestamp"),
    ttl=timedelta(days={ttl}), owner="team-{team}", tags={{"team": "t{team}", "tier": "{tier}"}},
    description="generated view {i} for the console benchmark",
)
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_repo(root: Path, reuse: bool = False) -> Path:
    from tureen.deployments import Deployments
    from tureen.examples.fraud import create_repo
    from tureen.models import ModelRegistry
    from tureen.store import FeatureStore

    if reuse and (root / "repo" / "models" / "big" / "1000").is_dir():
        return root / "repo"
    if root.exists():
        shutil.rmtree(root)
    repo = create_repo(root / "repo", accounts=200)
    with (repo / "features.py").open("a") as f:
        for i in range(197):  # + the example's 3 views = 200
            f.write(VIEW.format(i=i, ttl=i % 5, team=i % 7, tier=("gold", "silver")[i % 2]))
    with FeatureStore(repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=40), now + timedelta(minutes=1),
                       feature_views=["account_profile", "transaction_stats"])
    src = root / "model"
    src.mkdir()
    (src / "model.py").write_text(MODEL_PY)
    reg = ModelRegistry.for_repo(repo)
    rnd = random.Random(7)
    for _ in range(1000):
        reg.store.register("big", src, "custom", metrics={
            "auc": rnd.random(), "logloss": rnd.random(), "accuracy": rnd.random()},
            feature_service="fraud_detection_v1", description="nightly retrain")
    deps = Deployments.for_repo(repo)
    for i in range(50):
        spec = deps.create(f"dep-{i:02d}", "big", i + 1, logging=("NONE", "ALL")[i % 2],
                           feature_service="fraud_detection_v1")
        if i % 3 == 0:
            deps.set_state(spec.name, "started")
    logs = repo / ".tureen" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(50):
        with (logs / f"dep-{i:02d}-predictor.log").open("w") as f:
            for n in range(2000):
                f.write(f"2026-12-06 10:00:{n % 60:02d},000 INFO 4242 tureen.deployments."
                        f"dep-{i:02d}.predictor [req-{n}]: line {n}\n")
    _write_runs(repo, 20)
    return repo


def _write_runs(repo: Path, n: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.unit.console.conftest import write_run

    from tureen.pipelines import RunStore

    first = write_run(repo, "big", 3)
    store = RunStore.for_repo(repo)
    run = store.get(first)
    for i in range(1, n):
        store.create(run.model_copy(update={"id": f"20261206-1016{i:02d}-{i:06x}"}))


PAGES = [
    "/", "/features", "/features?tag=team%3Dt3", "/features/bench_view_100",
    "/features/account_profile?k.account_id=1001", "/services", "/services/fraud_detection_v1",
    "/entities", "/entities/account?k.account_id=1001", "/models", "/models/big",
    "/models/big?sort=auc", "/models/big?sort=auc&after=WzAsIC0wLjUsIC01MDBd",
    "/models/big/500", "/models/big/compare?a=1&b=1000", "/deployments",
    "/deployments?state=started", "/deployments/dep-00", "/deployments/dep-00/logs",
    "/deployments/new", "/pipelines", "/pipelines/20261206-101500-3f2a1c",
]


async def _call(app: Any, path: str) -> tuple[int, float]:
    p, _, q = path.partition("?")
    scope = {"type": "http", "method": "GET", "path": p, "raw_path": p.encode(),
             "query_string": q.encode(), "root_path": "", "headers": [(b"host", b"bench")]}
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]

    t0 = time.perf_counter()
    await app(scope, receive, send)
    return status, (time.perf_counter() - t0) * 1000


async def page_times(repo: Path, rounds: int, n: int) -> dict[str, Any]:
    from tureen.console import console_app

    app = console_app(repo)
    out: dict[str, Any] = {}
    for page in PAGES:
        for twin in (False, True):
            path = page
            if twin:
                base, _, q = page.partition("?")
                path = ("/index" if base == "/" else base) + ".json" + (f"?{q}" if q else "")
            status, _ = await _call(app, path)  # warm the caches once
            assert status == 200, (path, status)
            medians, p95s = [], []
            for _ in range(rounds):
                ts = sorted([(await _call(app, path))[1] for _ in range(n)])
                medians.append(statistics.median(ts))
                p95s.append(ts[min(len(ts) - 1, int(0.95 * len(ts)))])
            out[path] = {"median_ms": round(statistics.median(medians), 2),
                         "p95_ms": round(max(p95s), 2)}
    worst = max(v["median_ms"] for v in out.values())
    return {"pages": out, "worst_median_ms": worst, "target_ms": 50,
            "all_within_target": worst <= 50}


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sse_latency(repo: Path, browser: Any, lines: int = 20) -> dict[str, Any]:
    port = _port()
    proc = subprocess.Popen([*CLI, "console", "--repo", str(repo), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/", proc, "tureen console")
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/deployments/dep-01/logs?level=INFO")
        page.wait_for_selector("text=Live: new lines appear")
        token = os.urandom(4).hex()  # this run's lines only (the file keeps earlier runs')
        page.evaluate("""(token) => {
            window.__seen = {};
            const re = new RegExp("bench-" + token + "-([0-9]+)");
            new MutationObserver((records) => {
              const now = Date.now();
              for (const rec of records) for (const tr of rec.addedNodes) {
                const m = (tr.textContent || "").match(re);
                if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = now;
              }
            }).observe(document.querySelector('#log-lines tbody'), {childList: true});
        }""", token)
        path = repo / ".tureen" / "logs" / "dep-01-predictor.log"
        sent: dict[str, float] = {}
        for i in range(lines):
            with path.open("a") as f:
                sent[str(i)] = time.time() * 1000
                f.write(f"2026-12-06 11:00:00,000 INFO 4242 tureen.deployments.dep-01.predictor"
                        f" [bench-{i}]: bench-{token}-{i}\n")
            time.sleep(0.15)
        deadline = time.monotonic() + 5
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            seen = page.evaluate("() => window.__seen")
            if len(seen) == lines:
                break
            time.sleep(0.1)
        page.close()
        lat = sorted(seen[k] - sent[k] for k in seen)
        return {"lines": lines, "delivered": len(lat),
                "median_ms": round(statistics.median(lat), 1) if lat else None,
                "p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1) if lat else None,
                "max_ms": round(lat[-1], 1) if lat else None, "target_ms": 200}
    finally:
        _stop(proc)


WRK_LUA = """wrk.method = "POST"
wrk.body = '{"instances": [{"account_id": 1001}]}'
wrk.headers["Content-Type"] = "application/json"
"""


def _wrk(url: str, seconds: int, script: Path) -> tuple[float, int]:
    """(requests per second, requests served) of one wrk run."""
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n or "Non-2xx" in out:
        raise RuntimeError(f"wrk printed no rate, or errors:\n{out}")
    return float(m.group(1)), int(n.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serving_while_watched(repo: Path, browser: Any | None, rounds: int, seconds: int
                          ) -> dict[str, Any]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"plain": _port(), "console": _port()}
    try:
        for kind, port in ports.items():
            extra = ["--no-console"] if kind == "plain" else []
            procs[kind] = subprocess.Popen(
                [*CLI, "serve", "--repo", str(repo), "--http-port", str(port), "--grpc-port",
                 str(_port()), "--host", "127.0.0.1", "--no-models", *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for kind, port in ports.items():
            _wait(f"http://127.0.0.1:{port}/v2/health/ready", procs[kind], f"serve ({kind})")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_LUA)
            script = Path(f.name)
        page = browser.new_page() if browser is not None else None
        cost: dict[str, float] = {}
        if page is not None:  # the console's own CPU, no load: unwatched vs watched
            console_pid = procs["console"].pid
            for state, url in (("unwatched", "about:blank"), ("watched", (
                    f"http://127.0.0.1:{ports['console']}/console/deployments/dep-00"))):
                page.goto(url)
                time.sleep(2)
                c0 = _cpu_seconds(console_pid)
                time.sleep(10)
                cost[f"{state}_cpu_ms_per_s"] = round((_cpu_seconds(console_pid) - c0) * 100, 2)
        rates: dict[str, list[float]] = {"plain": [], "console": []}
        cpu_us: dict[str, list[float]] = {"plain": [], "console": []}
        for port in ports.values():  # warm up both
            _wrk(f"http://127.0.0.1:{port}/v1/models/dep-00:predict", 2, script)
        for _ in range(rounds):
            for kind, port in ports.items():
                if page is not None:
                    page.goto(f"http://127.0.0.1:{port}/console/deployments/dep-00"
                              if kind == "console" else "about:blank")
                cpu0 = _cpu_seconds(procs[kind].pid)
                rate, served = _wrk(f"http://127.0.0.1:{port}/v1/models/dep-00:predict",
                                    seconds, script)
                rates[kind].append(rate)
                cpu_us[kind].append((_cpu_seconds(procs[kind].pid) - cpu0) / served * 1e6)
        if page is not None:
            watched = page.url
            page.close()
        else:
            watched = None
        script.unlink()
        plain, console = statistics.median(rates["plain"]), statistics.median(rates["console"])
        cpu_plain = statistics.median(cpu_us["plain"])
        cpu_console = statistics.median(cpu_us["console"])
        if cost:  # what watching adds, as a share of the serving CPU at the plain rate
            serving_ms_per_s = cpu_plain * plain / 1000
            added = cost["watched_cpu_ms_per_s"] - cost["unwatched_cpu_ms_per_s"]
            cost["implied_capacity_ratio"] = round(
                serving_ms_per_s / (serving_ms_per_s + max(0.0, added)), 4)
        return {"console_cpu_without_load": cost, "rounds_rps": rates,
                "plain_median_rps": round(plain, 1),
                "console_watched_median_rps": round(console, 1),
                "throughput_ratio": round(console / plain, 3),
                "server_cpu_us_per_request": {"plain": round(cpu_plain, 1),
                                              "console_watched": round(cpu_console, 1)},
                "capacity_ratio": round(cpu_plain / cpu_console, 3), "target_ratio": 0.97,
                "browser_watching": watched}
    finally:
        for p in procs.values():
            _stop(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path,
                    default=Path(tempfile.gettempdir()) / "tureen-bench-console")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep a repo built by an earlier run")
    ap.add_argument("--parts", default="pages,sse,serving",
                    help="which parts to run (comma-separated: pages, sse, serving)")
    args = ap.parse_args()
    result: dict[str, Any] = {"benchmark": "console", "loadavg_before": os.getloadavg(),
                              "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    repo = build_repo(args.root, args.reuse)
    result["setup_seconds"] = round(time.perf_counter() - t0, 1)
    result["registry"] = {"feature_views": 200, "model_versions": 1000, "deployments": 50,
                          "pipeline_runs": 20}
    parts = set(args.parts.split(","))
    if "pages" in parts:
        result["page_server_time"] = asyncio.run(page_times(repo, args.rounds, args.requests))
    if args.no_browser or not Path(CHROMIUM).exists():
        result["sse"] = "skipped (no browser)"
        if "serving" in parts:
            result["serving"] = serving_while_watched(repo, None, args.rounds, args.seconds)
    else:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                if "sse" in parts:
                    result["sse"] = sse_latency(repo, browser)
                if "serving" in parts:
                    result["serving"] = serving_while_watched(repo, browser, args.rounds,
                                                              args.seconds)
            finally:
                browser.close()
    result["loadavg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
